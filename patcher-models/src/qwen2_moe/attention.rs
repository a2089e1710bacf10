//! `Qwen2MoeAttention`: separate q/k/v projections (with biases when `qkv_bias`), RoPE,
//! grouped-query eager attention, output projection without bias.

use burn::nn::Linear;
use burn::prelude::*;
use patcher_burn::layers::LinearLayer;
use patcher_burn::BuildContext;

use patcher_derive::Patchable;

use super::config::Qwen2MoeConfig;
use super::interfaces::Qwen2MoeAttentionInterface;
use crate::common::{
    attention_projections, separate_qkv_attention, AttentionSpec, DecoderAttention,
    PositionEmbeddings,
};

/// transformers' `Qwen2MoeAttention`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeAttentionInterface))]
pub struct Qwen2MoeAttention<B: Backend> {
    /// `hidden -> heads * head_dim`.
    pub q_proj: Linear<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub k_proj: Linear<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub v_proj: Linear<B>,
    /// `heads * head_dim -> hidden`, no bias.
    pub o_proj: Linear<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> Qwen2MoeAttention<B> {
    /// `Qwen2MoeAttention(config, layer_idx)`.
    pub fn new(config: &Qwen2MoeConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let spec = config.attention_spec(layer_idx);
        let [q_proj, k_proj, v_proj, o_proj] =
            attention_projections(&spec).map(|c| c.init(ctx.device()));
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

impl<B: Backend> DecoderAttention<B> for Qwen2MoeAttention<B> {
    fn forward(
        &self,
        hidden_states: Tensor<B, 3>,
        position_embeddings: &PositionEmbeddings<B>,
        attention_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let projections: [&dyn LinearLayer<B>; 4] =
            [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj];
        separate_qkv_attention(
            projections,
            &self.spec,
            hidden_states,
            position_embeddings,
            attention_mask,
        )
    }
}
