//! `Qwen2MoeDecoderLayer`: pre-norm attention and pre-norm sparse MoE, each with a residual.

use burn::prelude::*;
use patcher_burn::{BuildContext, Slot};

use super::attention::Qwen2MoeAttention;
use super::config::Qwen2MoeConfig;
use super::interfaces::Qwen2MoeAttentionInterface;
use super::moe::Qwen2MoeSparseMoeBlock;
use super::norm_mlp::Qwen2MoeRMSNorm;
use crate::common::{pre_norm_residuals, DecoderLayer, PositionEmbeddings};

/// transformers' `Qwen2MoeDecoderLayer`.
#[derive(Module, Debug)]
pub struct Qwen2MoeDecoderLayer<B: Backend> {
    /// Self-attention: `Qwen2MoeAttention` or its replacement.
    pub self_attn: Slot<B, dyn Qwen2MoeAttentionInterface<B>>,
    /// The sparse MoE block.
    pub mlp: Qwen2MoeSparseMoeBlock<B>,
    /// Norm before attention.
    pub input_layernorm: Qwen2MoeRMSNorm<B>,
    /// Norm before the MoE block.
    pub post_attention_layernorm: Qwen2MoeRMSNorm<B>,
}

impl<B: Backend> Qwen2MoeDecoderLayer<B> {
    /// `Qwen2MoeDecoderLayer(config, layer_idx)`, its slots built through `ctx`.
    pub fn new(config: &Qwen2MoeConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let device = ctx.device();
        let norm = || Qwen2MoeRMSNorm::new(config.hidden_size, config.rms_norm_eps, device);
        Self {
            self_attn: Slot::build::<Qwen2MoeAttention<B>>(ctx, (config, layer_idx)),
            mlp: Qwen2MoeSparseMoeBlock::new(config, ctx),
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
