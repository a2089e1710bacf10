//! `FusedQKVAttention`: the seed's replacement for `Qwen2MoeAttention`, `LlamaAttention`,
//! `MixtralAttention` and any attention class of the shared [`AttentionInterface`], with one
//! `qkv_proj` instead of separate q/k/v projections (what compute-bound quantisation kernels
//! want); [`FusedQkvBertSelfAttention`], the same for
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
    fused_qkv_attention, linear_config, AttentionInputs, AttentionInterface, AttentionSpec,
    DecoderAttention,
};

/// Attention with fused Q, K, V projections, split after projection. Fills the attention slot
/// of every decoder family ([`AttentionInterface`]).
#[derive(Module, Patchable, Debug)]
#[patchable(
    crate = "patcher_burn",
    name = "FusedQKVAttention",
    implements(AttentionInterface)
)]
pub struct FusedQkvAttention<B: Backend> {
    /// `hidden -> (heads + 2 * kv_heads) * head_dim`; bias when the config's q/k/v have one.
    pub qkv_proj: LinearSlot<B>,
    /// `heads * head_dim -> hidden`.
    pub o_proj: LinearSlot<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> FusedQkvAttention<B> {
    /// Built from the same arguments as the attention it replaces (the layer's shape and
    /// index), its linears through `ctx` (so they are substitutable too).
    pub fn new(spec: &AttentionSpec, _layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let (h, std) = (spec.hidden_size, spec.initializer_range);
        Self {
            qkv_proj: qkv_linear(spec).init_slot(ctx),
            o_proj: linear_config(spec.q_size(), h, spec.o_bias, std).init_slot(ctx),
            spec: *spec,
        }
    }

    /// The layer's attention shape.
    pub fn spec(&self) -> &AttentionSpec {
        &self.spec
    }
}

impl<B: Backend> DecoderAttention<B> for FusedQkvAttention<B> {
    fn forward(&self, hidden_states: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3> {
        let qkv = self.qkv_proj.forward(hidden_states);
        let out = fused_qkv_attention(&self.spec, qkv, inputs);
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
#[patchable(
    crate = "patcher_burn",
    name = "FusedQKVBertSelfAttention",
    implements(BertSelfAttentionInterface)
)]
pub struct FusedQkvBertSelfAttention<B: Backend> {
    /// `hidden -> 3 * hidden`.
    pub qkv: LinearSlot<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> FusedQkvBertSelfAttention<B> {
    /// Built from `BertSelfAttention`'s arguments, its linear through `ctx`.
    pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let spec = config.attention_spec();
        let qkv = qkv_linear(&spec).init_slot(ctx);
        Self { qkv, spec }
    }
}

impl<B: Backend> EncoderSelfAttention<B> for FusedQkvBertSelfAttention<B> {
    fn forward(&self, hidden_states: Tensor<B, 3>, mask: Option<&BertMask<B>>) -> Tensor<B, 3> {
        let inputs = AttentionInputs { attention_mask: mask, ..Default::default() };
        fused_qkv_attention(&self.spec, self.qkv.forward(hidden_states), inputs)
    }
}
