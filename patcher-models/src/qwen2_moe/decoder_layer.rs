//! `Qwen2MoeDecoderLayer`: pre-norm attention and pre-norm sparse MoE, each with a residual.

use burn::prelude::*;
use patcher_burn::{BuildContext, Slot};
use patcher_derive::Patchable;

use super::attention::Qwen2MoeAttention;
use super::config::Qwen2MoeConfig;
use super::interfaces::{
    Qwen2MoeAttentionInterface, Qwen2MoeDecoderLayerInterface, Qwen2MoeSparseMoeBlockInterface,
};
use super::moe::Qwen2MoeSparseMoeBlock;
use super::norm_mlp::Qwen2MoeRMSNorm;
use crate::common::{pre_norm_residuals, DecoderLayer, DecoderNormInterface, PositionEmbeddings};

/// transformers' `Qwen2MoeDecoderLayer`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeDecoderLayerInterface))]
pub struct Qwen2MoeDecoderLayer<B: Backend> {
    /// Self-attention: `Qwen2MoeAttention` or its replacement.
    pub self_attn: Slot<B, dyn Qwen2MoeAttentionInterface<B>>,
    /// The sparse MoE block: `Qwen2MoeSparseMoeBlock` or its replacement.
    pub mlp: Slot<B, dyn Qwen2MoeSparseMoeBlockInterface<B>>,
    /// Norm before attention: `Qwen2MoeRMSNorm` or its replacement.
    pub input_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
    /// Norm before the MoE block.
    pub post_attention_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
}

impl<B: Backend> Qwen2MoeDecoderLayer<B> {
    /// `Qwen2MoeDecoderLayer(config, layer_idx)`, its slots built through `ctx`.
    pub fn new(config: &Qwen2MoeConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let norm =
            || Slot::build::<Qwen2MoeRMSNorm<B>>(ctx, (config.hidden_size, config.rms_norm_eps));
        Self {
            self_attn: Slot::build::<Qwen2MoeAttention<B>>(ctx, (config, layer_idx)),
            mlp: Slot::build::<Qwen2MoeSparseMoeBlock<B>>(ctx, config),
            input_layernorm: norm(),
            post_attention_layernorm: norm(),
        }
    }

    /// `[batch, seq, hidden] -> [batch, seq, hidden]`.
    pub fn forward(
        &self,
        hidden_states: Tensor<B, 3>,
        position_embeddings: &PositionEmbeddings<B>,
        attention_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        pre_norm_residuals(
            hidden_states,
            |x| {
                let x = self.input_layernorm.forward(x);
                self.self_attn
                    .forward(x, position_embeddings, attention_mask)
            },
            |x| self.mlp.forward(self.post_attention_layernorm.forward(x)),
        )
    }
}

impl<B: Backend> DecoderLayer<B> for Qwen2MoeDecoderLayer<B> {
    fn forward(
        &self,
        hidden_states: Tensor<B, 3>,
        position_embeddings: &PositionEmbeddings<B>,
        attention_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        Qwen2MoeDecoderLayer::forward(self, hidden_states, position_embeddings, attention_mask)
    }
}
