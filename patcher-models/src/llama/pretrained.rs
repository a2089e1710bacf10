//! Loading Llama checkpoints: the default conversions and base model prefix the loader reads
//! ([`PretrainedModel`]), and the Auto classes' view of the family ([`FamilyModel`]).

use std::path::Path;

use burn::prelude::*;
use patcher_burn::{BuildContext, PretrainedModel};
use patcher_core::{ConfigError, WeightTransform};

use super::config::LlamaConfig;
use super::model::{LlamaForCausalLm, LlamaModel};
use crate::auto::{FamilyConfig, FamilyModel};
use crate::common::DECODER_KEYS_TO_IGNORE;

/// The conversions transformers applies when loading a Llama checkpoint: none
/// (`conversion_mapping.py` declares none for `llama`; the keys are the parameters' names).
pub fn default_weight_conversions() -> Vec<WeightTransform> {
    Vec::new()
}

impl<B: Backend> PretrainedModel<B> for LlamaForCausalLm<B> {
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
impl<B: Backend> PretrainedModel<B> for LlamaModel<B> {
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

impl FamilyConfig for LlamaConfig {
    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        LlamaConfig::from_file(path)
    }
}

impl<B: Backend> FamilyModel<B> for LlamaModel<B> {
    type Config = LlamaConfig;

    fn build(config: &LlamaConfig, ctx: &BuildContext<'_, B>) -> Self {
        LlamaModel::new(config, ctx)
    }
}
