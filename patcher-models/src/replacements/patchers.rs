//! What a [`Patch`] does to each of the kit's families ([`PatchTarget`]).
//!
//! [`Patch::seed`] on Qwen2-MoE is the seed's Python `Patcher`: both class mappings, the
//! filtered patterns `.gate_up_proj` and `.down_proj`, and the q/k/v weight and bias
//! concatenations into `qkv_proj`. One addition: the concatenations record the q/k/v sizes
//! ([`Concatenate::with_split_sizes`]), so that saving the patched model back splits `qkv_proj`
//! at the right rows under grouped-query attention (transformers' reverse, an equal `Chunk`,
//! cannot: q has more rows than k and v). Loading is unchanged, plus a check of those sizes.

use burn::prelude::*;
use patcher_burn::{Implements, OriginalClass, Patchable, Patcher};
use patcher_core::ops::Concatenate;
use patcher_core::{WeightConverter, WeightRenaming, WeightTransform};

use super::{FusedQkvAttention, FusedQkvBertSelfAttention, Patch, PatchTarget, SequentialExperts};
use crate::bert::{BertConfig, BertSelfAttention};
use crate::common::AttentionSpec;
use crate::llama::{LlamaAttention, LlamaConfig};
use crate::mixtral::{MixtralAttention, MixtralConfig, MixtralExperts};
use crate::qwen2_moe::{Qwen2MoeAttention, Qwen2MoeConfig, Qwen2MoeExperts};

/// `q_proj.{leaf}` + `k_proj.{leaf}` + `v_proj.{leaf}` -> `qkv_proj.{leaf}` by
/// `Concatenate(dim=0)` (rows of q, then k, then v, the layout `FusedQKVAttention` splits), with
/// the sizes `[heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]` of `spec` recorded
/// for the reverse.
pub fn qkv_concatenation(leaf: &str, spec: &AttentionSpec) -> WeightConverter {
    named_qkv_concatenation(["q_proj", "k_proj", "v_proj"], "qkv_proj", leaf, spec)
}

/// [`qkv_concatenation`] for other names: `{q}.{leaf}` + `{k}.{leaf}` + `{v}.{leaf}` ->
/// `{fused}.{leaf}` (BERT's `query`, `key`, `value` -> `qkv`).
pub fn named_qkv_concatenation(
    [q, k, v]: [&str; 3],
    fused: &str,
    leaf: &str,
    spec: &AttentionSpec,
) -> WeightConverter {
    let sizes = [spec.q_size(), spec.kv_size(), spec.kv_size()];
    WeightConverter::new(
        [q, k, v].map(|name| format!("{name}.{leaf}")),
        format!("{fused}.{leaf}"),
    )
    .op(Concatenate::new(0).with_split_sizes(sizes))
}

impl PatchTarget for Qwen2MoeConfig {
    const MODEL_TYPE: &'static str = Qwen2MoeConfig::MODEL_TYPE;
    const PATCHES: Patch = Patch::seed();

    /// - fused QKV: `Qwen2MoeAttention` -> [`FusedQkvAttention`], with the q/k/v weight and bias
    ///   concatenations (bias only when `config.qkv_bias`);
    /// - sequential experts: `Qwen2MoeExperts` -> [`SequentialExperts`], with the default
    ///   fused-expert converters filtered out (`.gate_up_proj`, `.down_proj`) so the per-expert
    ///   checkpoint keys load as they are.
    fn patcher_for<B: Backend>(&self, patch: Patch) -> Patcher<B> {
        let qkv = patch.has_fused_qkv().then(|| self.attention_spec(0));
        moe_patcher::<B, Qwen2MoeAttention<B>, Qwen2MoeExperts<B>>(
            qkv,
            patch.has_sequential_experts(),
            Vec::new(),
        )
    }
}

impl PatchTarget for MixtralConfig {
    const MODEL_TYPE: &'static str = MixtralConfig::MODEL_TYPE;
    const PATCHES: Patch = Patch::seed();

    /// - fused QKV: `MixtralAttention` -> [`FusedQkvAttention`], with the q/k/v weight
    ///   concatenation;
    /// - sequential experts: `MixtralExperts` -> [`SequentialExperts`], with the default
    ///   fused-expert converters filtered out and the hub's per-expert `w1`/`w3`/`w2` renamed to
    ///   `gate_proj`/`up_proj`/`down_proj` (after `block_sparse_moe` -> `mlp`, the default
    ///   renaming), so they load as they are; a v5 checkpoint's fused
    ///   `mlp.experts.gate_up_proj`/`down_proj` is split into the experts' linears
    ///   ([`split_fused_experts`]). Saving writes back the layout that was loaded.
    fn patcher_for<B: Backend>(&self, patch: Patch) -> Patcher<B> {
        let mut experts: Vec<WeightTransform> =
            [("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")]
                .into_iter()
                .map(|(hub, ours)| {
                    WeightRenaming::new(format!(".{hub}.weight"), format!(".{ours}.weight"))
                        .expect("a valid pattern")
                        .into()
                })
                .collect();
        experts.extend(split_fused_experts());
        let qkv = patch.has_fused_qkv().then(|| self.attention_spec(0));
        moe_patcher::<B, MixtralAttention<B>, MixtralExperts<B>>(
            qkv,
            patch.has_sequential_experts(),
            experts,
        )
    }
}

/// transformers 5's fused experts (`mlp.experts.gate_up_proj [E, 2I, H]`,
/// `mlp.experts.down_proj [E, H, I]`) split into per-expert `mlp.experts.{e}.gate_proj.weight`,
/// `up_proj`, `down_proj`: the reverse of the merges Qwen2-MoE's default conversions run.
pub fn split_fused_experts() -> Vec<WeightTransform> {
    crate::qwen2_moe::default_weight_conversions()
        .iter()
        .map(|merge| merge.reverse().expect("the merges are reversible"))
        .collect()
}

/// The seed-style patch of a MoE family whose attention class is `A` and experts class `E`:
/// fused QKV attention when `fused_qkv` gives the attention shape, sequential experts (the
/// default fused-expert converters filtered out, `expert_conversions` added) when
/// `sequential_experts`.
fn moe_patcher<B, A, E>(
    fused_qkv: Option<AttentionSpec>,
    sequential_experts: bool,
    expert_conversions: Vec<WeightTransform>,
) -> Patcher<B>
where
    B: Backend,
    A: OriginalClass,
    E: OriginalClass,
    FusedQkvAttention<B>: Implements<A::Interface> + Patchable<Backend = B>,
    SequentialExperts<B>: Implements<E::Interface> + Patchable<Backend = B>,
{
    let mut patcher = Patcher::<B>::new();
    if sequential_experts {
        patcher = patcher
            .replace::<E, SequentialExperts<B>>()
            .filtered_weight_conversion_patterns([".gate_up_proj", ".down_proj"])
            .extra_weight_conversions(expert_conversions);
    }
    match fused_qkv {
        Some(spec) => with_fused_qkv::<B, A>(patcher, &spec),
        None => patcher,
    }
}

/// `patcher` with attention class `A` replaced by [`FusedQkvAttention`] and the q/k/v
/// concatenations of `spec` added.
fn with_fused_qkv<B, A>(patcher: Patcher<B>, spec: &AttentionSpec) -> Patcher<B>
where
    B: Backend,
    A: OriginalClass,
    FusedQkvAttention<B>: Implements<A::Interface> + Patchable<Backend = B>,
{
    patcher
        .replace::<A, FusedQkvAttention<B>>()
        .extra_weight_conversions(qkv_concatenations(spec))
}

/// The weight concatenation, and the bias one when the q/k/v projections have biases.
fn qkv_concatenations(spec: &AttentionSpec) -> Vec<WeightConverter> {
    let mut converters = vec![qkv_concatenation("weight", spec)];
    if spec.qkv_bias {
        converters.push(qkv_concatenation("bias", spec));
    }
    converters
}

impl PatchTarget for BertConfig {
    const MODEL_TYPE: &'static str = BertConfig::MODEL_TYPE;
    const PATCHES: Patch = Patch::fused_qkv();

    /// Fused QKV: `BertSelfAttention` -> [`FusedQkvBertSelfAttention`], with the
    /// `query`/`key`/`value` weight and bias concatenations into `qkv` (split back on save).
    fn patcher_for<B: Backend>(&self, patch: Patch) -> Patcher<B> {
        if !patch.has_fused_qkv() {
            return Patcher::new();
        }
        let spec = self.attention_spec();
        let names = ["query", "key", "value"];
        Patcher::new()
            .replace::<BertSelfAttention<B>, FusedQkvBertSelfAttention<B>>()
            .extra_weight_conversions(
                ["weight", "bias"].map(|leaf| named_qkv_concatenation(names, "qkv", leaf, &spec)),
            )
    }
}

impl PatchTarget for LlamaConfig {
    const MODEL_TYPE: &'static str = LlamaConfig::MODEL_TYPE;
    const PATCHES: Patch = Patch::fused_qkv();

    /// Fused QKV: `LlamaAttention` -> [`FusedQkvAttention`], with the q/k/v weight
    /// concatenation (and the bias one when `config.attention_bias`).
    fn patcher_for<B: Backend>(&self, patch: Patch) -> Patcher<B> {
        if !patch.has_fused_qkv() {
            return Patcher::new();
        }
        with_fused_qkv::<B, LlamaAttention<B>>(Patcher::new(), &self.attention_spec(0))
    }
}
