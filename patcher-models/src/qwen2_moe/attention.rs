//! `Qwen2MoeAttention`: separate q/k/v projections (with biases when `qkv_bias`), RoPE,
//! grouped-query eager attention, output projection without bias.

use burn::nn::Linear;

use super::config::Qwen2MoeConfig;
use super::interfaces::Qwen2MoeAttentionInterface;
use crate::common::separate_qkv_attention_class;

separate_qkv_attention_class!(
    Qwen2MoeAttention,
    Qwen2MoeConfig,
    Qwen2MoeAttentionInterface,
    Linear,
    init
);
