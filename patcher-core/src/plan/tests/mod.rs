//! Plan tests: transformers' `TestConvertAndLoadStateDict` (keys, shapes and exact values), the
//! save direction, prefixes, scopes and the report. This file holds the shared fixtures.

mod directions;
mod hf_matrix;
mod prefixes;
mod report;
mod save;
mod seed;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::ops::{Chunk, Concatenate, ConversionOp, MergeModulelist};
use crate::tensor::{DType, HostTensor, TensorMeta};
use crate::{WeightConverter, WeightRenaming};

/// A state dict of f32 tensors: name -> (shape, values).
pub(super) type Dict = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

pub(super) fn dict(entries: &[(&str, &[usize], &[f32])]) -> Dict {
    entries
        .iter()
        .map(|(k, s, v)| (k.to_string(), (s.to_vec(), v.to_vec())))
        .collect()
}

pub(super) fn tensor(shape: &[usize], values: &[f32]) -> HostTensor<'static> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    HostTensor::new(DType::F32, shape.to_vec(), bytes)
}

pub(super) fn values(t: &HostTensor<'_>) -> Vec<f32> {
    t.bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub(super) fn metas(d: &Dict) -> Vec<(String, TensorMeta)> {
    d.iter()
        .map(|(k, (s, _))| (k.clone(), TensorMeta::new(DType::F32, s.clone())))
        .collect()
}

pub(super) fn shapes(model: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    model
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_vec()))
        .collect()
}

/// Executes every group of `plan` on `input` (what the loader does, without files).
pub(super) fn execute(plan: &ConversionPlan, input: &Dict) -> Dict {
    let mut out = Dict::new();
    for group in plan.groups() {
        let inputs = group.sources.clone().map(|k| {
            let (s, v) = &input[&k];
            tensor(s, v)
        });
        for (key, t) in group.execute(inputs).unwrap() {
            assert!(
                out.insert(key.clone(), (t.shape.clone(), values(&t)))
                    .is_none(),
                "{key} twice"
            );
        }
    }
    out
}

/// Qwen2-MoE's default conversions: per-expert checkpoint keys merged into fused experts.
pub(super) fn fused_experts_conversions() -> Vec<WeightTransform> {
    vec![
        WeightConverter::try_new(
            [
                "mlp.experts.*.gate_proj.weight",
                "mlp.experts.*.up_proj.weight",
            ],
            "mlp.experts.gate_up_proj",
            vec![op(MergeModulelist::new(0)), op(Concatenate::new(1))],
        )
        .unwrap()
        .into(),
        WeightConverter::try_new(
            "mlp.experts.*.down_proj.weight",
            "mlp.experts.down_proj",
            vec![op(MergeModulelist::new(0))],
        )
        .unwrap()
        .into(),
    ]
}

pub(super) fn op(op: impl ConversionOp + 'static) -> Arc<dyn ConversionOp> {
    Arc::new(op)
}

/// transformers' `DummyRoot`: `model.layers.{0,1}` with q/k/v, fused experts, and `mlp`.
pub(super) const DUMMY_ROOT: &[(&str, &[usize])] = &[
    ("model.layers.0.self_attn.q_proj.weight", &[1, 2]),
    ("model.layers.0.self_attn.k_proj.weight", &[1, 2]),
    ("model.layers.0.self_attn.v_proj.weight", &[1, 2]),
    ("model.layers.0.experts.gate_up_proj.weight", &[2, 4, 2]),
    ("model.layers.0.experts.down_proj.weight", &[2, 2, 2]),
    ("model.layers.1.self_attn.q_proj.weight", &[1, 2]),
    ("model.layers.1.self_attn.k_proj.weight", &[1, 2]),
    ("model.layers.1.self_attn.v_proj.weight", &[1, 2]),
    ("model.layers.1.experts.gate_up_proj.weight", &[2, 4, 2]),
    ("model.layers.1.experts.down_proj.weight", &[2, 2, 2]),
    ("mlp.down_proj.weight", &[2, 2]),
];

pub(super) fn raw_moe_checkpoint() -> Dict {
    dict(&[
        (
            "model.layers.0.experts.0.w1.weight",
            &[2, 2],
            &[0.0, 1.0, 2.0, 3.0],
        ),
        (
            "model.layers.0.experts.1.w1.weight",
            &[2, 2],
            &[10.0, 11.0, 12.0, 13.0],
        ),
        (
            "model.layers.0.experts.0.w3.weight",
            &[2, 2],
            &[4.0, 5.0, 6.0, 7.0],
        ),
        (
            "model.layers.0.experts.1.w3.weight",
            &[2, 2],
            &[14.0, 15.0, 16.0, 17.0],
        ),
        (
            "model.layers.0.experts.0.w2.weight",
            &[2, 2],
            &[20.0, 21.0, 22.0, 23.0],
        ),
        (
            "model.layers.0.experts.1.w2.weight",
            &[2, 2],
            &[24.0, 25.0, 26.0, 27.0],
        ),
        (
            "model.layers.1.experts.0.w1.weight",
            &[2, 2],
            &[30.0, 31.0, 32.0, 33.0],
        ),
        (
            "model.layers.1.experts.1.w1.weight",
            &[2, 2],
            &[34.0, 35.0, 36.0, 37.0],
        ),
        (
            "model.layers.1.experts.0.w3.weight",
            &[2, 2],
            &[38.0, 39.0, 40.0, 41.0],
        ),
        (
            "model.layers.1.experts.1.w3.weight",
            &[2, 2],
            &[42.0, 43.0, 44.0, 45.0],
        ),
        (
            "model.layers.1.experts.0.w2.weight",
            &[2, 2],
            &[46.0, 47.0, 48.0, 49.0],
        ),
        (
            "model.layers.1.experts.1.w2.weight",
            &[2, 2],
            &[50.0, 51.0, 52.0, 53.0],
        ),
        (
            "model.layers.0.self_attn.qkv_proj.weight",
            &[3, 2],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        ),
        (
            "model.layers.1.self_attn.qkv_proj.weight",
            &[3, 2],
            &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0],
        ),
        ("mlp.w2.weight", &[2, 2], &[60.0, 61.0, 62.0, 63.0]),
    ])
}

pub(super) fn moe_mapping(qkv_source: &str, qkv_targets: [&str; 3]) -> Vec<WeightTransform> {
    vec![
        WeightConverter::try_new(
            ["experts.*.w1.weight", "experts.*.w3.weight"],
            "experts.gate_up_proj.weight",
            vec![op(MergeModulelist::new(0)), op(Concatenate::new(1))],
        )
        .unwrap()
        .into(),
        WeightConverter::try_new(
            "experts.*.w2.weight",
            "experts.down_proj.weight",
            vec![op(MergeModulelist::new(0))],
        )
        .unwrap()
        .into(),
        WeightConverter::try_new(qkv_source, qkv_targets, vec![op(Chunk::new(0))])
            .unwrap()
            .into(),
        WeightRenaming::new("mlp.w2.weight", "mlp.down_proj.weight")
            .unwrap()
            .into(),
    ]
}

/// `cat([stack(w1), stack(w3)], dim=1)` for two experts of 2x2: per expert, w1 rows then w3 rows.
pub(super) fn cat_gate(raw: &Dict, layer: usize) -> Vec<f32> {
    let get = |e: usize, w: &str| {
        raw[&format!("model.layers.{layer}.experts.{e}.{w}.weight")]
            .1
            .clone()
    };
    [get(0, "w1"), get(0, "w3"), get(1, "w1"), get(1, "w3")].concat()
}

#[test]
fn plans_and_transforms_can_cross_threads() {
    // The loader may execute groups on worker threads.
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ConversionPlan>();
    send_sync::<PlannedGroup>();
    send_sync::<WeightTransform>();
    send_sync::<crate::WeightPatch>();
}
