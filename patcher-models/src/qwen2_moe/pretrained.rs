//! Loading Qwen2-MoE checkpoints: the model's default conversions and base model prefix for
//! burn-patcher's loader, and `from_pretrained`.

use super::config::Qwen2MoeConfig;
use super::model::{Qwen2MoeForCausalLM, Qwen2MoeModel};
use crate::common::pretrained::pretrained_family;

// The causal LM loads a checkpoint as is; the bare model loads its `model.` keys.
pretrained_family!(
    super::conversions::default_weight_conversions => Qwen2MoeForCausalLM, Qwen2MoeModel, Qwen2MoeConfig
);
