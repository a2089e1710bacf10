//! Mixtral as transformers 5.23 writes it (`models/mixtral/modeling_mixtral.py`): same class
//! names, same parameter names, experts fused in memory (`mlp.experts.gate_up_proj`,
//! `mlp.experts.down_proj`), the router at `mlp.gate`. Hub checkpoints keep per-expert
//! `block_sparse_moe.experts.{e}.w1/w2/w3` and `block_sparse_moe.gate`:
//! [`default_weight_conversions`] renames and merges them, as transformers does.

mod config;
mod model;

use burn::prelude::*;
use std::path::Path;

use patcher_burn::{BuildContext, PretrainedModel};
use patcher_core::ops::{Concatenate, MergeModulelist};
use patcher_core::{ConfigError, WeightConverter, WeightRenaming, WeightTransform};

pub use config::MixtralConfig;
pub use model::{
    MixtralAttention, MixtralDecoderLayer, MixtralDecoderLayerInterface, MixtralExperts,
    MixtralForCausalLm, MixtralModel, MixtralRmsNorm, MixtralSparseMoeBlock,
    MixtralSparseMoeBlockInterface, MixtralTopKRouter,
};

use crate::auto::{FamilyConfig, FamilyModel};
use crate::common::DECODER_KEYS_TO_IGNORE;

/// transformers' `mapping["mixtral"]`: `.block_sparse_moe.` renamed to `.mlp.`, then
/// `.experts.*.w1.weight` + `.experts.*.w3.weight` -> `.experts.gate_up_proj` by
/// `MergeModulelist(dim=0)` and `Concatenate(dim=1)`, and `.experts.*.w2.weight` ->
/// `.experts.down_proj` by `MergeModulelist(dim=0)`.
pub fn default_weight_conversions() -> Vec<WeightTransform> {
    let gate_up = WeightConverter::new(
        [".experts.*.w1.weight", ".experts.*.w3.weight"],
        ".experts.gate_up_proj",
    )
    .op(MergeModulelist::new(0))
    .op(Concatenate::new(1));
    let down = WeightConverter::new(".experts.*.w2.weight", ".experts.down_proj")
        .op(MergeModulelist::new(0));
    let renaming = WeightRenaming::new(".block_sparse_moe.", ".mlp.").expect("a valid pattern");
    vec![renaming.into(), gate_up.into(), down.into()]
}

impl<B: Backend> PretrainedModel<B> for MixtralForCausalLm<B> {
    fn weight_conversions() -> Vec<WeightTransform> {
        default_weight_conversions()
    }

    fn base_model_prefix() -> Option<&'static str> {
        Some("model")
    }

    fn keys_to_ignore_on_load_unexpected() -> Vec<String> {
        DECODER_KEYS_TO_IGNORE.map(String::from).to_vec()
    }
}

/// The bare model loads a causal LM's checkpoint through its `model.` prefix.
impl<B: Backend> PretrainedModel<B> for MixtralModel<B> {
    fn weight_conversions() -> Vec<WeightTransform> {
        default_weight_conversions()
    }

    fn base_model_prefix() -> Option<&'static str> {
        Some("model")
    }

    fn keys_to_ignore_on_load_unexpected() -> Vec<String> {
        DECODER_KEYS_TO_IGNORE.map(String::from).to_vec()
    }
}

impl FamilyConfig for MixtralConfig {
    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        MixtralConfig::from_file(path)
    }
}

impl<B: Backend> FamilyModel<B> for MixtralModel<B> {
    type Config = MixtralConfig;

    fn build(config: &MixtralConfig, ctx: &BuildContext<'_, B>) -> Self {
        MixtralModel::new(config, ctx)
    }
}
