//! The seed's replacement classes: [`FusedQkvAttention`] for the decoders' attention classes
//! ([`FusedQkvBertSelfAttention`] for BERT's self-attention) and [`SequentialExperts`] for the
//! fused experts (`Qwen2MoeExperts`, `MixtralExperts`; a user's family's through the same shared
//! interfaces), a [`LoraLinear`] for any `Linear` slot, and [`Patch`], the presets that apply
//! them to a family.

mod fused_qkv;
mod lora;
mod patch;
mod patchers;
mod sequential_experts;

pub use fused_qkv::{FusedQkvAttention, FusedQkvBertSelfAttention};
pub use lora::{
    load_lora_adapter, lora_patcher, merge_lora, save_lora_adapter, save_lora_base,
    save_lora_merged, LoraLinear, OnlyLoraTrainable, PeftAdapterConfig, PeftAdapterError,
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, LORA_PARAMETERS,
};
pub use patch::{Patch, PatchTarget, UnknownPatch};
pub use patchers::{named_qkv_concatenation, qkv_concatenation, split_fused_experts};
pub use sequential_experts::{ExpertMlp, SequentialExperts};
