//! GPT-2 as transformers 5.23 writes it (`models/gpt2/modeling_gpt2.py`): same class names, same
//! parameter names (`transformer.h.0.attn.c_attn.weight`), `Conv1D` weights loaded as stored.
//! The original hub checkpoints (keys without `transformer.`, with each block's causal-mask
//! buffer `attn.bias`) load too: the prefix is added and the buffers are ignored, as in
//! transformers.

mod config;
mod model;

use std::path::Path;

use burn::prelude::*;
use patcher_burn::PretrainedModel;
use patcher_core::{ConfigError, WeightTransform};

pub use config::Gpt2Config;
pub use model::{
    Gpt2Attention, Gpt2Block, Gpt2BlockInterface, Gpt2LmHeadModel, Gpt2Mlp, Gpt2Model,
};

use crate::auto::FamilyConfig;

impl<B: Backend> PretrainedModel<B> for Gpt2LmHeadModel<B> {
    fn weight_conversions() -> Vec<WeightTransform> {
        Vec::new()
    }

    fn base_model_prefix() -> Option<&'static str> {
        Some("transformer")
    }

    fn keys_to_ignore_on_load_unexpected() -> Vec<String> {
        // The causal-mask buffers of older checkpoints (`h.0.attn.bias`, `h.0.attn.masked_bias`).
        vec![r"\.attn\.bias$".into(), r"\.attn\.masked_bias$".into()]
    }
}

impl FamilyConfig for Gpt2Config {
    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Gpt2Config::from_file(path)
    }
}
