//! The seed's replacement classes: [`FusedQKVAttention`] for the decoders' attention classes
//! ([`FusedQKVBertSelfAttention`] for BERT's self-attention) and
//! [`SequentialExperts`] for the fused experts (`Qwen2MoeExperts`, `MixtralExperts`; another
//! family's through [`AttentionConfig`] and [`ExpertsConfig`]), a [`LoraLinear`] for any
//! `Linear` slot, and the patchers that apply them.

mod fused_qkv;
mod lora;
mod patchers;
mod sequential_experts;

pub use fused_qkv::{AttentionConfig, FusedQKVAttention, FusedQKVBertSelfAttention};
pub use lora::{
    load_lora_adapter, lora_patcher, merge_lora, save_lora_adapter, save_lora_base,
    save_lora_merged, LoraLinear, OnlyLoraTrainable, PeftAdapterConfig, PeftAdapterError,
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, LORA_PARAMETERS,
};
pub use patchers::{
    bert_fused_qkv_patcher, llama_fused_qkv_patcher, mixtral_patcher, named_qkv_concatenation,
    qkv_concatenation, qwen2_moe_fused_qkv_sequential_experts_patcher, qwen2_moe_patcher,
    split_fused_experts,
};
pub use sequential_experts::{ExpertMLP, ExpertsConfig, ExpertsShape, SequentialExperts};
