//! `LlamaAttention`: separate q/k/v/o projections (biases when `attention_bias`), RoPE,
//! grouped-query eager attention.

use burn::prelude::*;
use patcher_burn::layers::{InitSlot, LinearSlot};
use patcher_burn::BuildContext;

use patcher_derive::Patchable;

use super::config::LlamaConfig;
use super::interfaces::LlamaAttentionInterface;
use crate::common::{
    attention_projections, separate_qkv_attention, AttentionSpec, DecoderAttention,
    PositionEmbeddings,
};

/// transformers' `LlamaAttention`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(LlamaAttentionInterface))]
pub struct LlamaAttention<B: Backend> {
    /// `hidden -> heads * head_dim`.
    pub q_proj: LinearSlot<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub k_proj: LinearSlot<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub v_proj: LinearSlot<B>,
    /// `heads * head_dim -> hidden`.
    pub o_proj: LinearSlot<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> LlamaAttention<B> {
    /// `LlamaAttention(config, layer_idx)`.
    pub fn new(config: &LlamaConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let spec = config.attention_spec(layer_idx);
        let [q_proj, k_proj, v_proj, o_proj] =
            attention_projections(&spec).map(|c| c.init_slot(ctx));
        Self {
            q_proj,
            k_proj,
            v_proj,
            o_proj,
            spec,
        }
    }

    /// The layer's attention shape.
    pub fn spec(&self) -> &AttentionSpec {
        &self.spec
    }
}

impl<B: Backend> DecoderAttention<B> for LlamaAttention<B> {
    fn forward(
        &self,
        hidden_states: Tensor<B, 3>,
        position_embeddings: &PositionEmbeddings<B>,
        attention_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let projections = [&*self.q_proj, &*self.k_proj, &*self.v_proj, &*self.o_proj];
        separate_qkv_attention(
            projections,
            &self.spec,
            hidden_states,
            position_embeddings,
            attention_mask,
        )
    }
}
