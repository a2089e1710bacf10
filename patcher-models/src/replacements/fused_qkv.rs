//! `FusedQKVAttention`: the seed's replacement for `Qwen2MoeAttention`, `LlamaAttention` and
//! `MixtralAttention`, with one `qkv_proj` instead of separate q/k/v projections (what
//! compute-bound quantisation kernels want); [`FusedQKVBertSelfAttention`], the same for
//! `BertSelfAttention` (which has no output projection, and no RoPE).
//!
//! `qkv_proj` is sized `(num_attention_heads + 2 * num_key_value_heads) * head_dim`: the rows of
//! `q_proj`, then `k_proj`, then `v_proj`, which is what `Concatenate(dim=0)` of the three
//! checkpoint weights produces. (The seed's Python sketch used `3 * num_attention_heads *
//! head_dim`, wrong for grouped-query attention.)

use burn::nn::LinearConfig;
use burn::prelude::*;
use patcher_burn::layers::{InitSlot, LinearSlot};
use patcher_burn::BuildContext;

use patcher_derive::Patchable;

use crate::bert::{BertConfig, BertMask, BertSelfAttentionInterface};
use crate::common::EncoderSelfAttention;
use crate::common::{
    fused_qkv_attention, linear_config, AttentionSpec, DecoderAttention, PositionEmbeddings,
};
use crate::llama::{LlamaAttentionInterface, LlamaConfig};
use crate::mixtral::{MixtralAttentionInterface, MixtralConfig};
use crate::qwen2_moe::{Qwen2MoeAttentionInterface, Qwen2MoeConfig};

/// A config that describes attention layers, so one replacement class serves several families.
pub trait AttentionConfig {
    /// The attention shape of layer `layer_idx`.
    fn attention_spec(&self, layer_idx: usize) -> AttentionSpec;
}

impl AttentionConfig for Qwen2MoeConfig {
    fn attention_spec(&self, layer_idx: usize) -> AttentionSpec {
        Qwen2MoeConfig::attention_spec(self, layer_idx)
    }
}

impl AttentionConfig for LlamaConfig {
    fn attention_spec(&self, layer_idx: usize) -> AttentionSpec {
        LlamaConfig::attention_spec(self, layer_idx)
    }
}

impl AttentionConfig for MixtralConfig {
    fn attention_spec(&self, layer_idx: usize) -> AttentionSpec {
        MixtralConfig::attention_spec(self, layer_idx)
    }
}

/// Attention with fused Q, K, V projections, split after projection. Fills the attention slots
/// of Qwen2-MoE, Llama and Mixtral.
#[derive(Module, Patchable, Debug)]
#[patchable(
    crate = "patcher_burn",
    implements(
        Qwen2MoeAttentionInterface,
        LlamaAttentionInterface,
        MixtralAttentionInterface
    )
)]
pub struct FusedQKVAttention<B: Backend> {
    /// `hidden -> (heads + 2 * kv_heads) * head_dim`; bias when the config's q/k/v have one.
    pub qkv_proj: LinearSlot<B>,
    /// `heads * head_dim -> hidden`.
    pub o_proj: LinearSlot<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> FusedQKVAttention<B> {
    /// Built from the same arguments as the attention it replaces (`config`, `layer_idx`), its
    /// linears through `ctx` (so they are substitutable too).
    pub fn new<C: AttentionConfig>(
        config: &C,
        layer_idx: usize,
        ctx: &BuildContext<'_, B>,
    ) -> Self {
        Self::from_spec(config.attention_spec(layer_idx), ctx)
    }

    /// Built from an attention shape.
    pub fn from_spec(spec: AttentionSpec, ctx: &BuildContext<'_, B>) -> Self {
        let (h, std) = (spec.hidden_size, spec.initializer_range);
        Self {
            qkv_proj: qkv_linear(&spec).init_slot(ctx),
            o_proj: linear_config(spec.q_size(), h, spec.o_bias, std).init_slot(ctx),
            spec,
        }
    }

    /// The layer's attention shape.
    pub fn spec(&self) -> &AttentionSpec {
        &self.spec
    }
}

impl<B: Backend> DecoderAttention<B> for FusedQKVAttention<B> {
    fn forward(
        &self,
        hidden_states: Tensor<B, 3>,
        position_embeddings: &PositionEmbeddings<B>,
        attention_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let qkv = self.qkv_proj.forward(hidden_states);
        let out = fused_qkv_attention(&self.spec, qkv, Some(position_embeddings), attention_mask);
        self.o_proj.forward(out)
    }
}

/// The fused projection `hidden -> q_size + 2 * kv_size` (with the q/k/v bias when they have
/// one), normal-initialised.
fn qkv_linear(spec: &AttentionSpec) -> LinearConfig {
    let fused = spec.q_size() + 2 * spec.kv_size();
    linear_config(
        spec.hidden_size,
        fused,
        spec.qkv_bias,
        spec.initializer_range,
    )
}

/// `BertSelfAttention` with its `query`, `key` and `value` fused in one `qkv` linear (weight and
/// bias: the rows of `query`, then `key`, then `value`), split after projection.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertSelfAttentionInterface))]
pub struct FusedQKVBertSelfAttention<B: Backend> {
    /// `hidden -> 3 * hidden`.
    pub qkv: LinearSlot<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> FusedQKVBertSelfAttention<B> {
    /// Built from `BertSelfAttention`'s arguments, its linear through `ctx`.
    pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let spec = config.attention_spec();
        let qkv = qkv_linear(&spec).init_slot(ctx);
        Self { qkv, spec }
    }
}

impl<B: Backend> EncoderSelfAttention<B> for FusedQKVBertSelfAttention<B> {
    fn forward(&self, hidden_states: Tensor<B, 3>, mask: Option<&BertMask<B>>) -> Tensor<B, 3> {
        fused_qkv_attention(&self.spec, self.qkv.forward(hidden_states), None, mask)
    }
}
