//! Loading Llama checkpoints: the model's default conversions and base model prefix for
//! burn-patcher's loader, and `from_pretrained`.

use super::config::LlamaConfig;
use super::model::{LlamaForCausalLM, LlamaModel};
use crate::common::pretrained::pretrained_family;

// The causal LM loads a checkpoint as is; the bare model loads its `model.` keys.
pretrained_family!(
    super::conversions::default_weight_conversions => LlamaForCausalLM, LlamaModel, LlamaConfig
);
