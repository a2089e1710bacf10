//! `LoraLinear`: a `Linear` replacement with a frozen base and a trainable low-rank update
//! (LoRA; PEFT's `lora.Linear`): `base_layer(x) + lora_b(lora_a(x)) * scaling`.
//!
//! `lora_b` starts at zero, so a fresh adapter computes exactly what its base computes. The
//! parameter names are PEFT's (`q_proj.base_layer.weight`, `q_proj.lora_a.weight`, ...); a stock
//! checkpoint's `q_proj.weight` reaches the base through the renamings of [`lora_patcher`], and
//! the adapters, which no stock checkpoint holds, are kept as initialized with
//! [`LORA_PARAMETERS`] given to `LoadOptions::ignore_missing`.
//!
//! Saving goes as PEFT's: [`save_lora_base`] writes the base checkpoint as it was loaded,
//! [`save_lora_adapter`] the adapters as PEFT's `adapter_model.safetensors` and
//! `adapter_config.json`, and [`save_lora_merged`] the base with the adapters merged in
//! ([`merge_lora`]); [`load_lora_adapter`] reads a PEFT adapter back.

mod error;
mod merge;
mod peft;

pub use error::PeftAdapterError;
pub use merge::merge_lora;
pub use peft::{
    load_lora_adapter, save_lora_adapter, save_lora_base, save_lora_merged, PeftAdapterConfig,
    ADAPTER_CONFIG, ADAPTER_WEIGHTS,
};

use burn::module::{Initializer, ModuleMapper, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use patcher_burn::layers::{LinearForward, LinearLayer};
use patcher_burn::Patcher;
use patcher_core::{TransformError, WeightRenaming};
use patcher_derive::Patchable;

/// A LoRA linear of rank `RANK`; `alpha = RANK`, so the update is scaled by 1.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(LinearLayer))]
pub struct LoraLinear<B: Backend, const RANK: usize> {
    /// The original linear, frozen (no gradient).
    pub base_layer: Linear<B>,
    /// `d_input -> RANK`, no bias, Kaiming-uniform (PyTorch's `nn.Linear` init, as PEFT).
    pub lora_a: Linear<B>,
    /// `RANK -> d_output`, no bias, zero at first.
    pub lora_b: Linear<B>,
}

impl<B: Backend, const RANK: usize> LoraLinear<B, RANK> {
    /// Built from the config of the `Linear` it replaces: the same base, frozen, plus the
    /// adapter.
    pub fn new(config: &LinearConfig, device: &B::Device) -> Self {
        Self {
            base_layer: config.init(device).no_grad(),
            lora_a: LinearConfig::new(config.d_input, RANK)
                .with_bias(false)
                .init(device),
            lora_b: LinearConfig::new(RANK, config.d_output)
                .with_bias(false)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let update = self.lora_b.forward(self.lora_a.forward(x.clone()));
        self.base_layer.forward(x) + update
    }
}

impl<B: Backend, const RANK: usize> LinearForward<B> for LoraLinear<B, RANK> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }

    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward(x)
    }
}

/// The adapters' parameters, as a pattern for `LoadOptions::ignore_missing`: no stock
/// checkpoint holds them.
pub const LORA_PARAMETERS: &str = r"\.lora_[ab]\.weight$";

/// Every `Linear` slot as a [`LoraLinear`] of rank `RANK`, with the checkpoint's
/// `{name}.weight`/`{name}.bias` renamed to `{name}.base_layer.*` for each of `linear_names`
/// (e.g. Llama's `q_proj`, ..., `down_proj`, `lm_head`).
///
/// Errors if a name makes an invalid pattern (they are regexes, as transformers' patterns).
pub fn lora_patcher<B: Backend, const RANK: usize>(
    linear_names: &[&str],
) -> Result<Patcher<B>, TransformError> {
    let names = linear_names.join("|");
    let renamings = ["weight", "bias"]
        .map(|leaf| {
            WeightRenaming::new(
                format!(r"\b({names})\.{leaf}$"),
                format!(r"\1.base_layer.{leaf}"),
            )
        })
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Patcher::new()
        .replace::<Linear<B>, LoraLinear<B, RANK>>()
        .extra_weight_conversions(renamings))
}

/// PEFT's `mark_only_lora_as_trainable`, as a mapper: every float parameter frozen but the
/// adapters' (`lora_a`, `lora_b`). `model.map(&mut OnlyLoraTrainable::default())`.
#[derive(Debug, Default)]
pub struct OnlyLoraTrainable {
    path: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for OnlyLoraTrainable {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let adapter = self.path.iter().any(|n| n == "lora_a" || n == "lora_b");
        param.set_require_grad(adapter)
    }
}
