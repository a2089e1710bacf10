//! Ready-made patchers for the seed's replacements, so examples and tests share one definition.
//!
//! [`qwen2_moe_seed_patcher`] is exactly the seed's Python `Patcher`: both class mappings, the
//! filtered patterns `.gate_up_proj` and `.down_proj`, and the q/k/v weight and bias
//! concatenations into `qkv_proj`.

use std::sync::Arc;

use burn::prelude::*;
use patcher_burn::replacement;
use patcher_core::ops::Concatenate;
use patcher_core::{Patcher, WeightConverter};

use super::{FusedQKVAttention, SequentialExperts};
use crate::llama::{LlamaAttentionInterface, LlamaConfig};
use crate::qwen2_moe::{Qwen2MoeAttentionInterface, Qwen2MoeExpertsInterface};

/// `q_proj.{leaf}` + `k_proj.{leaf}` + `v_proj.{leaf}` -> `qkv_proj.{leaf}` by
/// `Concatenate(dim=0)` (rows of q, then k, then v, the layout `FusedQKVAttention` splits).
pub fn qkv_concatenation(leaf: &str) -> WeightConverter {
    WeightConverter::new(
        [
            format!("q_proj.{leaf}"),
            format!("k_proj.{leaf}"),
            format!("v_proj.{leaf}"),
        ],
        format!("qkv_proj.{leaf}"),
        vec![Arc::new(Concatenate::new(0))],
    )
    // Constant, valid patterns (checked by the tests): construction cannot fail.
    .expect("q/k/v concatenation is a valid converter")
}

/// A Qwen2-MoE patcher applying some of the seed's replacements:
/// - `fused_qkv`: `Qwen2MoeAttention` -> [`FusedQKVAttention`], with the q/k/v weight and bias
///   concatenations;
/// - `sequential_experts`: `Qwen2MoeExperts` -> [`SequentialExperts`], with the default
///   fused-expert converters filtered out (`.gate_up_proj`, `.down_proj`) so the per-expert
///   checkpoint keys load as they are.
pub fn qwen2_moe_patcher<B: Backend>(fused_qkv: bool, sequential_experts: bool) -> Patcher<B> {
    let mut patcher = Patcher::new();
    // Class names and filter regexes below are constants: these calls cannot fail.
    if sequential_experts {
        patcher = patcher
            .class_mapping(
                "Qwen2MoeExperts",
                replacement::<SequentialExperts<B>, dyn Qwen2MoeExpertsInterface<B>>(),
            )
            .expect("constant class name")
            .filtered_weight_conversion_patterns([".gate_up_proj", ".down_proj"])
            .expect("constant filter patterns");
    }
    if fused_qkv {
        patcher = patcher
            .class_mapping(
                "Qwen2MoeAttention",
                replacement::<FusedQKVAttention<B>, dyn Qwen2MoeAttentionInterface<B>>(),
            )
            .expect("constant class name")
            .extra_weight_conversions([qkv_concatenation("weight"), qkv_concatenation("bias")]);
    }
    patcher
}

/// The seed's patcher: sequential experts and fused QKV attention.
pub fn qwen2_moe_seed_patcher<B: Backend>() -> Patcher<B> {
    qwen2_moe_patcher(true, true)
}

/// `LlamaAttention` -> [`FusedQKVAttention`], with the q/k/v weight concatenation (and the bias
/// one when `config.attention_bias`).
pub fn llama_fused_qkv_patcher<B: Backend>(config: &LlamaConfig) -> Patcher<B> {
    let mut converters = vec![qkv_concatenation("weight")];
    if config.attention_bias {
        converters.push(qkv_concatenation("bias"));
    }
    Patcher::new()
        .class_mapping(
            "LlamaAttention",
            replacement::<FusedQKVAttention<B>, dyn LlamaAttentionInterface<B>>(),
        )
        .expect("constant class name")
        .extra_weight_conversions(converters)
}
