//! The seed's replacement classes: [`FusedQKVAttention`] for the decoders' attention classes
//! ([`FusedQKVBertSelfAttention`] for BERT's self-attention) and
//! [`SequentialExperts`] for the fused experts (`Qwen2MoeExperts`, `MixtralExperts`; another
//! family's through [`AttentionConfig`] and [`ExpertsConfig`]), a [`LoraLinear`] for any
//! `Linear` slot, and [`Patch`], the presets that apply them to a family.

mod fused_qkv;
mod lora;
mod patch;
mod patchers;
mod sequential_experts;

pub use fused_qkv::{AttentionConfig, FusedQKVAttention, FusedQKVBertSelfAttention};
pub use lora::{
    load_lora_adapter, lora_patcher, merge_lora, save_lora_adapter, save_lora_base,
    save_lora_merged, LoraLinear, OnlyLoraTrainable, PeftAdapterConfig, PeftAdapterError,
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, LORA_PARAMETERS,
};
pub use patch::{Patch, PatchTarget, UnknownPatch};
pub use patchers::{named_qkv_concatenation, qkv_concatenation, split_fused_experts};
pub use sequential_experts::{ExpertMLP, ExpertsConfig, ExpertsShape, SequentialExperts};
