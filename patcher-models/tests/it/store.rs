//! Burn's own habit, `model.load_from(&mut store)` / `model.save_into(&mut store)`, with a
//! `PatcherStore` on the kit's fixtures: parity with transformers through the patcher's
//! conversions, an `ApplyResult` that says what happened, saves in the layout that was loaded,
//! and a failed load that leaves the model as it was.

use crate::common::parity::assert_parity;
use crate::common::{fixtures, input_ids, read_reference, scratch};
use crate::roundtrip::raw;
use burn::backend::NdArray;
use burn::prelude::*;
use burn_store::{ApplyResult, ModuleSnapshot, ModuleStore};
use patcher_burn::{model_params, LoadError, LoadOptions, StoreError};
use patcher_core::{Checkpoint, DType};
use patcher_models::llama::{LlamaConfig, LlamaForCausalLm};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;

type B = NdArray<f32>;

/// The Burn paths of `model`'s parameters, sorted.
fn burn_paths<M: Module<B>>(model: &M) -> Vec<String> {
    let mut paths: Vec<String> = model_params(model)
        .into_iter()
        .map(|p| p.burn_path)
        .collect();
    paths.sort();
    paths
}

fn sorted(mut applied: Vec<String>) -> Vec<String> {
    applied.sort();
    applied
}

#[test]
fn the_seed_patch_loads_the_fused_layout_and_saves_it_back_byte_for_byte() {
    let device = Default::default();
    let path = fixtures().join("qwen2_moe_fused");
    let config = Qwen2MoeConfig::from_file(path.join("config.json")).unwrap();
    let patcher = Patch::seed().patcher::<B, _>(&config).unwrap();
    let mut model = Qwen2MoeForCausalLm::with_patcher(&config, &patcher, &device).unwrap();
    let pretrained = Pretrained::from_path(&path).patcher(&patcher);
    let mut store = pretrained.store::<Qwen2MoeForCausalLm<B>>().unwrap();

    let result = model.load_from(&mut store).unwrap();
    assert_eq!(sorted(result.applied.clone()), burn_paths(&model));
    assert!(result.missing.is_empty(), "{result}");
    assert!(
        result.unused.is_empty() && result.skipped.is_empty(),
        "{result}"
    );
    assert!(result.errors.is_empty(), "{result}");
    let reference = read_reference(&path);
    let out = model.forward_with_hidden_states(input_ids::<B>(&reference, &device));
    assert_parity("store qwen2_moe_fused seed", &out, &reference, 1e-4);

    // Sequential experts back into transformers 5's fused experts: the file that was read.
    let out_dir = scratch("store-seed");
    let mut store = store.save_to(&out_dir);
    model.save_into(&mut store).unwrap();
    let saved = std::fs::read(out_dir.join("model.safetensors")).unwrap();
    assert!(saved == std::fs::read(path.join("model.safetensors")).unwrap());
    std::fs::remove_dir_all(out_dir).ok();
}

#[test]
fn a_strict_load_that_does_not_fit_leaves_the_model_as_it_was() {
    let device = Default::default();
    // The tied checkpoint has no `lm_head.weight`; this config wants one.
    let config = LlamaConfig::from_file(fixtures().join("llama/config.json")).unwrap();
    let path = fixtures().join("llama_tied");
    let mut model = LlamaForCausalLm::<B>::new(&config, &device);
    let before = model.model.embed_tokens.weight.val().into_data();
    let mut store = Pretrained::<B>::from_path(&path)
        .store::<LlamaForCausalLm<B>>()
        .unwrap();

    let err = model.load_from(&mut store).unwrap_err();
    let StoreError::Load(LoadError::Incomplete { report }) = &err else {
        panic!("expected an incomplete load, got {err}");
    };
    assert_eq!(report.missing, ["lm_head.weight"]);
    let embed = model.model.embed_tokens.weight.val().into_data();
    assert_eq!(embed, before);
    let checkpoint = Checkpoint::open(&path).unwrap();
    let stored = checkpoint
        .get("model.embed_tokens.weight")
        .unwrap()
        .read()
        .unwrap();
    assert_ne!(embed.as_bytes(), &stored.bytes[..], "nothing was loaded");

    // Partial: what fits is loaded, the rest is in the ApplyResult.
    let options = LoadOptions::default().partial();
    let pretrained = Pretrained::<B>::from_path(&path).options(options);
    let mut store = pretrained.store::<LlamaForCausalLm<B>>().unwrap();
    let ApplyResult { applied, missing, errors, .. } = model.load_from(&mut store).unwrap();
    assert_eq!(
        missing,
        [("lm_head.weight".to_string(), "lm_head.weight".to_string())]
    );
    let mut expected = burn_paths(&model);
    expected.retain(|p| p != "lm_head.weight");
    assert_eq!(sorted(applied), expected);
    assert!(errors.is_empty());
    let embed = model.model.embed_tokens.weight.val().into_data();
    assert_eq!(embed.as_bytes(), &stored.bytes[..]);
}

#[test]
fn a_store_saves_without_a_load_in_the_stock_layout_and_shows_the_checkpoint() {
    let device = Default::default();
    let path = fixtures().join("llama");
    let loaded = Pretrained::<B>::from_path(&path)
        .load::<LlamaForCausalLm<B>>(&device)
        .unwrap();
    // A fresh store (no load through it): the model's stock layout, the same tensors.
    let out_dir = scratch("store-stock");
    let pretrained = Pretrained::<B>::from_path(&path);
    let mut store = pretrained
        .store::<LlamaForCausalLm<B>>()
        .unwrap()
        .save_to(&out_dir);
    loaded.model.save_into(&mut store).unwrap();
    assert_eq!(
        raw(&out_dir.join("model.safetensors")),
        raw(&path.join("model.safetensors"))
    );
    std::fs::remove_dir_all(out_dir).ok();

    // The snapshots are the checkpoint's tensors as stored, read when asked for.
    let checkpoint = Checkpoint::open(&path).unwrap();
    let mut keys: Vec<String> = checkpoint.keys().map(str::to_string).collect();
    keys.sort();
    assert_eq!(store.keys().unwrap(), keys);
    let q = store
        .get_snapshot("model.layers.0.self_attn.q_proj.weight")
        .unwrap()
        .unwrap();
    let stored = checkpoint
        .get("model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(q.shape.to_vec(), stored.shape());
    assert_eq!(stored.dtype(), DType::F32);
    assert_eq!(
        q.to_data().unwrap().as_bytes(),
        &stored.read().unwrap().bytes[..]
    );
    assert!(store.get_snapshot("no.such.key").unwrap().is_none());
}

#[test]
fn a_patchers_conversions_into_the_unpatched_model_are_reported_key_by_key() {
    // The seed patch leaves the per-expert checkpoint keys as they are (it filters the
    // experts' converters): an unpatched model, which wants the fused experts, gets none of them.
    // A partial load keeps what fits; the ApplyResult names every key and parameter left over.
    let device = Default::default();
    let path = fixtures().join("qwen2_moe");
    let config = Qwen2MoeConfig::from_file(path.join("config.json")).unwrap();
    let seed = Patch::seed().patcher::<B, _>(&config).unwrap();
    let mut model = Qwen2MoeForCausalLm::<B>::new(&config, &device);
    let options = LoadOptions::default().partial();
    let pretrained = Pretrained::from_path(&path).patcher(&seed).options(options);
    let mut store = pretrained.store::<Qwen2MoeForCausalLm<B>>().unwrap();
    let result = model.load_from(&mut store).unwrap();

    let checkpoint = Checkpoint::open(&path).unwrap();
    // `...mlp.experts.<n>.`: one expert's key.
    let per_expert = |key: &&str| {
        let rest = key.split(".mlp.experts.").nth(1).unwrap_or_default();
        rest.split('.')
            .next()
            .is_some_and(|n| n.parse::<usize>().is_ok())
    };
    let expert_keys: Vec<String> = checkpoint
        .keys()
        .filter(per_expert)
        .map(str::to_string)
        .collect();
    assert!(!expert_keys.is_empty());
    assert_eq!(
        sorted(result.unused.clone()),
        sorted(expert_keys),
        "{result}"
    );
    let fused: Vec<String> = (0..config.core.num_hidden_layers)
        .filter(|l| checkpoint.contains(&format!("model.layers.{l}.mlp.experts.0.up_proj.weight")))
        .flat_map(|l| {
            ["down_proj", "gate_up_proj"].map(|p| format!("model.layers.{l}.mlp.experts.{p}"))
        })
        .collect();
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(_, name)| name.clone())
        .collect();
    assert_eq!(sorted(missing), sorted(fused), "{result}");
    assert!(
        result.errors.is_empty() && result.skipped.is_empty(),
        "{result}"
    );
    assert_eq!(
        result.applied.len() + result.missing.len(),
        burn_paths(&model).len()
    );
}
