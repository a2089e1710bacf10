//! Loading Qwen2-MoE checkpoints: the default conversions and base model prefix the loader reads
//! ([`PretrainedModel`]), and the Auto classes' view of the family ([`FamilyModel`]).

use std::path::Path;

use burn::prelude::*;
use patcher_burn::{BuildContext, PretrainedModel};
use patcher_core::ops::{Concatenate, MergeModulelist};
use patcher_core::{ConfigError, WeightConverter, WeightTransform};

use super::config::Qwen2MoeConfig;
use super::model::{Qwen2MoeForCausalLm, Qwen2MoeModel};
use crate::auto::{FamilyConfig, FamilyModel};
use crate::common::DECODER_KEYS_TO_IGNORE;

/// transformers' `mapping["qwen2_moe"]`:
/// - `mlp.experts.*.gate_proj.weight` + `mlp.experts.*.up_proj.weight` ->
///   `mlp.experts.gate_up_proj` by `MergeModulelist(dim=0)` then `Concatenate(dim=1)`
///   (`[E, I, H]` + `[E, I, H]` -> `[E, 2I, H]`);
/// - `mlp.experts.*.down_proj.weight` -> `mlp.experts.down_proj` by `MergeModulelist(dim=0)`.
pub fn default_weight_conversions() -> Vec<WeightTransform> {
    let gate_up = WeightConverter::new(
        [
            "mlp.experts.*.gate_proj.weight",
            "mlp.experts.*.up_proj.weight",
        ],
        "mlp.experts.gate_up_proj",
    )
    .op(MergeModulelist::new(0))
    .op(Concatenate::new(1));
    let down = WeightConverter::new("mlp.experts.*.down_proj.weight", "mlp.experts.down_proj")
        .op(MergeModulelist::new(0));
    vec![gate_up.into(), down.into()]
}

impl<B: Backend> PretrainedModel<B> for Qwen2MoeForCausalLm<B> {
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
impl<B: Backend> PretrainedModel<B> for Qwen2MoeModel<B> {
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

impl FamilyConfig for Qwen2MoeConfig {
    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Qwen2MoeConfig::from_file(path)
    }
}

impl<B: Backend> FamilyModel<B> for Qwen2MoeModel<B> {
    type Config = Qwen2MoeConfig;

    fn build(config: &Qwen2MoeConfig, ctx: &BuildContext<'_, B>) -> Self {
        Qwen2MoeModel::new(config, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_the_fused_parameters() {
        let table = default_weight_conversions();
        assert_eq!(table.len(), 2);
        assert!(table.iter().all(WeightTransform::is_converter));
        assert!(table.iter().all(|t| t.validate().is_ok()));
        let key = "model.layers.1.mlp.experts.3.up_proj.weight";
        let (renamed, _) = table[0].rename_source_key(key).unwrap();
        assert_eq!(renamed, "model.layers.1.mlp.experts.gate_up_proj");
        let key = "model.layers.0.mlp.experts.0.down_proj.weight";
        let (renamed, _) = table[1].rename_source_key(key).unwrap();
        assert_eq!(renamed, "model.layers.0.mlp.experts.down_proj");
        assert!(table[0]
            .rename_source_key("model.layers.0.mlp.shared_expert.up_proj.weight")
            .is_none());
    }
}
