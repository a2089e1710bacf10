//! Ready-made patchers for the seed's replacements, so examples and tests share one definition.
//!
//! [`qwen2_moe_seed_patcher`] is the seed's Python `Patcher`: both class mappings, the filtered
//! patterns `.gate_up_proj` and `.down_proj`, and the q/k/v weight and bias concatenations into
//! `qkv_proj`. One addition: the concatenations record the q/k/v sizes
//! ([`Concatenate::with_split_sizes`]), so that saving the patched model back splits `qkv_proj`
//! at the right rows under grouped-query attention (transformers' reverse, an equal `Chunk`,
//! cannot: q has more rows than k and v). Loading is unchanged, plus a check of those sizes.

use burn::prelude::*;
use patcher_burn::Patcher;
use patcher_core::ops::Concatenate;
use patcher_core::WeightConverter;

use super::{FusedQKVAttention, SequentialExperts};
use crate::common::AttentionSpec;
use crate::llama::{LlamaAttention, LlamaConfig};
use crate::qwen2_moe::{Qwen2MoeAttention, Qwen2MoeConfig, Qwen2MoeExperts};

/// `q_proj.{leaf}` + `k_proj.{leaf}` + `v_proj.{leaf}` -> `qkv_proj.{leaf}` by
/// `Concatenate(dim=0)` (rows of q, then k, then v, the layout `FusedQKVAttention` splits), with
/// the sizes `[heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]` of `spec` recorded
/// for the reverse.
pub fn qkv_concatenation(leaf: &str, spec: &AttentionSpec) -> WeightConverter {
    let sizes = [spec.q_size(), spec.kv_size(), spec.kv_size()];
    WeightConverter::new(
        [
            format!("q_proj.{leaf}"),
            format!("k_proj.{leaf}"),
            format!("v_proj.{leaf}"),
        ],
        format!("qkv_proj.{leaf}"),
    )
    .op(Concatenate::new(0).with_split_sizes(sizes))
}

/// A Qwen2-MoE patcher applying some of the seed's replacements:
/// - `fused_qkv`: `Qwen2MoeAttention` -> [`FusedQKVAttention`], with the q/k/v weight and bias
///   concatenations (bias only when `config.qkv_bias`);
/// - `sequential_experts`: `Qwen2MoeExperts` -> [`SequentialExperts`], with the default
///   fused-expert converters filtered out (`.gate_up_proj`, `.down_proj`) so the per-expert
///   checkpoint keys load as they are.
pub fn qwen2_moe_patcher<B: Backend>(
    config: &Qwen2MoeConfig,
    fused_qkv: bool,
    sequential_experts: bool,
) -> Patcher<B> {
    let mut patcher = Patcher::new();
    if sequential_experts {
        patcher = patcher
            .replace::<Qwen2MoeExperts<B>, SequentialExperts<B>>()
            .filtered_weight_conversion_patterns([".gate_up_proj", ".down_proj"]);
    }
    if fused_qkv {
        patcher = patcher
            .replace::<Qwen2MoeAttention<B>, FusedQKVAttention<B>>()
            .extra_weight_conversions(qkv_concatenations(&config.attention_spec(0)));
    }
    patcher
}

/// The seed's patcher: sequential experts and fused QKV attention.
pub fn qwen2_moe_seed_patcher<B: Backend>(config: &Qwen2MoeConfig) -> Patcher<B> {
    qwen2_moe_patcher(config, true, true)
}

/// The weight concatenation, and the bias one when the q/k/v projections have biases.
fn qkv_concatenations(spec: &AttentionSpec) -> Vec<WeightConverter> {
    let mut converters = vec![qkv_concatenation("weight", spec)];
    if spec.qkv_bias {
        converters.push(qkv_concatenation("bias", spec));
    }
    converters
}

/// `LlamaAttention` -> [`FusedQKVAttention`], with the q/k/v weight concatenation (and the bias
/// one when `config.attention_bias`).
pub fn llama_fused_qkv_patcher<B: Backend>(config: &LlamaConfig) -> Patcher<B> {
    Patcher::new()
        .replace::<LlamaAttention<B>, FusedQKVAttention<B>>()
        .extra_weight_conversions(qkv_concatenations(&config.attention_spec(0)))
}
