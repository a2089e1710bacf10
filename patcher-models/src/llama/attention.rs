//! `LlamaAttention`: separate q/k/v/o projections (biases when `attention_bias`), RoPE,
//! grouped-query eager attention.

use burn::nn::Linear;
use burn::prelude::*;

use patcher_derive::Patchable;

use super::config::LlamaConfig;
use super::interfaces::LlamaAttentionInterface;
use crate::common::{eager_attention, linear, AttentionSpec, DecoderAttention, PositionEmbeddings};

/// transformers' `LlamaAttention`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(LlamaAttentionInterface))]
pub struct LlamaAttention<B: Backend> {
    /// `hidden -> heads * head_dim`.
    pub q_proj: Linear<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub k_proj: Linear<B>,
    /// `hidden -> kv_heads * head_dim`.
    pub v_proj: Linear<B>,
    /// `heads * head_dim -> hidden`.
    pub o_proj: Linear<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> LlamaAttention<B> {
    /// `LlamaAttention(config, layer_idx)`.
    pub fn new(config: &LlamaConfig, layer_idx: usize, device: &B::Device) -> Self {
        let spec = config.attention_spec(layer_idx);
        let (h, std) = (spec.hidden_size, spec.initializer_range);
        Self {
            q_proj: linear(h, spec.q_size(), spec.qkv_bias, std, device),
            k_proj: linear(h, spec.kv_size(), spec.qkv_bias, std, device),
            v_proj: linear(h, spec.kv_size(), spec.qkv_bias, std, device),
            o_proj: linear(spec.q_size(), h, spec.o_bias, std, device),
            spec,
        }
    }

    /// The layer's attention shape.
    pub fn spec(&self) -> &AttentionSpec {
        &self.spec
    }
}

impl<B: Backend> LlamaAttentionInterface<B> for LlamaAttention<B> {
    fn new(config: &LlamaConfig, layer_idx: usize, device: &B::Device) -> Self {
        LlamaAttention::new(config, layer_idx, device)
    }
}

impl<B: Backend> DecoderAttention<B> for LlamaAttention<B> {
    fn forward(
        &self,
        hidden_states: Tensor<B, 3>,
        position_embeddings: &PositionEmbeddings<B>,
        attention_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let q = self.q_proj.forward(hidden_states.clone());
        let k = self.k_proj.forward(hidden_states.clone());
        let v = self.v_proj.forward(hidden_states);
        let out = eager_attention(&self.spec, q, k, v, position_embeddings, attention_mask);
        self.o_proj.forward(out)
    }
}
