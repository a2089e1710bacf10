//! A tiny MoE-shaped model and checkpoint writer shared by the loader tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::{Param, ParamId};
use burn::nn::{Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use half::{bf16, f16};
use patcher_burn::PretrainedModel;
use patcher_core::ops::{Concatenate, MergeModulelist};
use patcher_core::{save_safetensors, DType, HostTensor, WeightConverter, WeightTransform};

pub const LAYERS: usize = 2;
pub const HIDDEN: usize = 4;
pub const OUT: usize = 3;
pub const EXPERTS: usize = 3;
pub const INTER: usize = 2;
pub const POSITIONS: usize = 5;

#[derive(Module, Debug)]
pub struct Experts<B: Backend> {
    pub gate_up_proj: Param<Tensor<B, 3>>,
    pub down_proj: Param<Tensor<B, 3>>,
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub q_proj: Linear<B>,
    pub norm: RmsNorm<B>,
    pub experts: Experts<B>,
}

#[derive(Module, Debug)]
pub struct Tiny<B: Backend> {
    pub layers: Vec<Block<B>>,
    pub position_ids: Param<Tensor<B, 1, Int>>,
}

impl<B: Backend> Tiny<B> {
    pub fn new(device: &B::Device) -> Self {
        let param = |shape: [usize; 3]| {
            Param::initialized(
                ParamId::new(),
                Tensor::random(shape, burn::tensor::Distribution::Default, device),
            )
        };
        let layers = (0..LAYERS)
            .map(|_| Block {
                q_proj: LinearConfig::new(HIDDEN, OUT).init(device),
                norm: RmsNormConfig::new(HIDDEN).init(device),
                experts: Experts {
                    gate_up_proj: param([EXPERTS, 2 * INTER, HIDDEN]),
                    down_proj: param([EXPERTS, HIDDEN, INTER]),
                },
            })
            .collect();
        let positions = Tensor::zeros([POSITIONS], device);
        Self {
            layers,
            position_ids: Param::initialized(ParamId::new(), positions),
        }
    }
}

impl<B: Backend> PretrainedModel<B> for Tiny<B> {
    fn weight_conversions() -> Vec<WeightTransform> {
        let gate_up = WeightConverter::try_new(
            ["experts.*.gate_proj.weight", "experts.*.up_proj.weight"],
            "experts.gate_up_proj",
            vec![
                Arc::new(MergeModulelist::new(0)),
                Arc::new(Concatenate::new(1)),
            ],
        );
        let down = WeightConverter::try_new(
            "experts.*.down_proj.weight",
            "experts.down_proj",
            vec![Arc::new(MergeModulelist::new(0))],
        );
        vec![gate_up.unwrap().into(), down.unwrap().into()]
    }
}

pub fn expert_key(layer: usize, expert: usize, proj: &str) -> String {
    format!("layers.{layer}.experts.{expert}.{proj}_proj.weight")
}

/// Values that are exact in f16, bf16 and f32 (multiples of 1/16 below 8), all different.
fn exact_values(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((seed * 31 + i * 7) % 97) as f32 - 48.0) / 16.0)
        .collect()
}

fn host(dtype: DType, shape: &[usize], values: &[f32]) -> HostTensor<'static> {
    match dtype {
        DType::F16 => HostTensor::from_f16(
            shape,
            &values.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(),
        ),
        DType::BF16 => HostTensor::from_bf16(
            shape,
            &values
                .iter()
                .map(|&v| bf16::from_f32(v))
                .collect::<Vec<_>>(),
        ),
        _ => HostTensor::from_f32(shape, values),
    }
}

pub fn f32_tensor(shape: &[usize], value: f32) -> HostTensor<'static> {
    HostTensor::from_f32(shape, &vec![value; shape.iter().product()])
}

/// The checkpoint of [`Tiny`] as transformers would save it: PyTorch layout, per-expert keys.
pub fn tiny_checkpoint(dtype: DType) -> HashMap<String, HostTensor<'static>> {
    let mut tensors = HashMap::new();
    let mut seed = 0;
    let mut add = |name: String, shape: &[usize]| {
        seed += 1;
        let values = exact_values(seed, shape.iter().product());
        tensors.insert(name, host(dtype, shape, &values));
    };
    for l in 0..LAYERS {
        add(format!("layers.{l}.q_proj.weight"), &[OUT, HIDDEN]);
        add(format!("layers.{l}.q_proj.bias"), &[OUT]);
        add(format!("layers.{l}.norm.weight"), &[HIDDEN]);
        for e in 0..EXPERTS {
            add(expert_key(l, e, "gate"), &[INTER, HIDDEN]);
            add(expert_key(l, e, "up"), &[INTER, HIDDEN]);
            add(expert_key(l, e, "down"), &[HIDDEN, INTER]);
        }
    }
    let positions: Vec<i64> = (0..POSITIONS as i64).collect();
    tensors.insert(
        "position_ids".into(),
        HostTensor::from_values(DType::I64, [POSITIONS], &positions),
    );
    tensors
}

pub fn write_checkpoint(path: &Path, tensors: &HashMap<String, HostTensor<'static>>) {
    let items = tensors.iter().map(|(k, v)| (k.clone(), v.view()));
    save_safetensors(path, items, None).unwrap();
}

/// A checkpoint tensor's values as f32, in PyTorch order.
pub fn tensor_values(tensor: &HostTensor<'_>) -> Vec<f32> {
    tensor.to_f32_vec().unwrap()
}

/// A Burn tensor's values as f32.
pub fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec().unwrap()
}

/// A folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("patcher-burn-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
