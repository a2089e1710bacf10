//! The seed's replacement classes: [`FusedQKVAttention`] for the attention classes and
//! [`SequentialExperts`] for `Qwen2MoeExperts`, and the patchers that apply them.

mod fused_qkv;
mod patchers;
mod sequential_experts;

pub use fused_qkv::{AttentionConfig, FusedQKVAttention};
pub use patchers::{
    llama_fused_qkv_patcher, qkv_concatenation, qwen2_moe_patcher, qwen2_moe_seed_patcher,
};
pub use sequential_experts::{ExpertMLP, SequentialExperts};
