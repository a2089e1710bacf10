//! Merging LoRA adapters into their base layers (PEFT's `merge_and_unload`, the adapters kept
//! at zero so the model computes the same).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// `model` with every [`LoraLinear`](super::LoraLinear)'s update merged into its base layer:
/// `base = base + lora_a · lora_b` in Burn's layout (PyTorch's `W + B @ A * scaling`, the
/// kit's scaling being 1), and `lora_b` set to zero, so the model computes what it computed
/// and its base layers hold the merged weights. Save it without the adapters
/// ([`save_lora_merged`](super::save_lora_merged) does both) to get a stock checkpoint.
pub fn merge_lora<B: Backend, M: Module<B>>(model: M) -> M {
    let mut adapters = Adapters::default();
    model.visit(&mut adapters);
    let updates: HashMap<String, Tensor<B, 2>> = adapters
        .a
        .into_iter()
        .filter_map(|(at, a)| {
            let b = adapters.b.remove(&at)?;
            Some((at, a.matmul(b)))
        })
        .collect();
    model.map(&mut Merge { path: Vec::new(), updates })
}

/// Where a LoRA parameter sits: the path of its `LoraLinear` and which part it is.
fn lora_part(path: &[String]) -> Option<(String, &str)> {
    match path {
        [at @ .., part, leaf] if leaf == "weight" => Some((at.join("."), part.as_str())),
        _ => None,
    }
}

/// The adapters' weights (Burn layout: `lora_a` is `[d_input, rank]`, `lora_b` `[rank,
/// d_output]`), by the path of their `LoraLinear`.
struct Adapters<B: Backend> {
    path: Vec<String>,
    a: HashMap<String, Tensor<B, 2>>,
    b: HashMap<String, Tensor<B, 2>>,
}

impl<B: Backend> Default for Adapters<B> {
    fn default() -> Self {
        Self { path: Vec::new(), a: HashMap::new(), b: HashMap::new() }
    }
}

impl<B: Backend> ModuleVisitor<B> for Adapters<B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some((at, part)) = lora_part(&self.path) else {
            return;
        };
        let dims = param.dims();
        let &[rows, cols] = dims.as_slice() else {
            return;
        };
        let weight = param.val().reshape([rows, cols]);
        match part {
            "lora_a" => self.a.insert(at, weight),
            "lora_b" => self.b.insert(at, weight),
            _ => None,
        };
    }
}

/// Adds each update to its base weight and zeroes the `lora_b` it came from.
struct Merge<B: Backend> {
    path: Vec<String>,
    updates: HashMap<String, Tensor<B, 2>>,
}

impl<B: Backend> ModuleMapper<B> for Merge<B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some((at, part)) = lora_part(&self.path) else {
            return param;
        };
        let Some(update) = self.updates.get(&at) else {
            return param;
        };
        let update = update.clone();
        match part {
            "base_layer" => param.map(|w| {
                let merged = w.clone() + update.reshape(w.dims());
                // A new leaf (no graph back to the adapters), trainable as the base was.
                let trainable = w.is_require_grad();
                Tensor::from_data(merged.into_data(), &w.device()).set_require_grad(trainable)
            }),
            "lora_b" => param.map(|b| {
                let trainable = b.is_require_grad();
                b.zeros_like().detach().set_require_grad(trainable)
            }),
            _ => param,
        }
    }
}
