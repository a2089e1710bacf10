//! `LlamaAttention`: separate q/k/v/o projections (biases when `attention_bias`), each a
//! substitutable linear, RoPE, grouped-query eager attention.

use patcher_burn::layers::LinearSlot;

use super::config::LlamaConfig;
use super::interfaces::LlamaAttentionInterface;
use crate::common::separate_qkv_attention_class;

separate_qkv_attention_class!(
    LlamaAttention,
    LlamaConfig,
    LlamaAttentionInterface,
    LinearSlot,
    init_slot
);
