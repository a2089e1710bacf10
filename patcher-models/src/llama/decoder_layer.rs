//! `LlamaDecoderLayer`: pre-norm attention and pre-norm MLP, each with a residual.

use burn::prelude::*;
use patcher_burn::{BuildContext, Slot};

use super::attention::LlamaAttention;
use super::config::LlamaConfig;
use super::interfaces::LlamaAttentionInterface;
use super::norm_mlp::{LlamaMLP, LlamaRMSNorm};
use crate::common::{pre_norm_residuals, DecoderLayer, PositionEmbeddings};

/// transformers' `LlamaDecoderLayer`.
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer<B: Backend> {
    /// Self-attention: `LlamaAttention` or its replacement.
    pub self_attn: Slot<B, dyn LlamaAttentionInterface<B>>,
    /// The MLP.
    pub mlp: LlamaMLP<B>,
    /// Norm before attention.
    pub input_layernorm: LlamaRMSNorm<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: LlamaRMSNorm<B>,
}

impl<B: Backend> LlamaDecoderLayer<B> {
    /// `LlamaDecoderLayer(config, layer_idx)`, its slot built through `ctx`.
    pub fn new(config: &LlamaConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let device = ctx.device();
        let norm = || LlamaRMSNorm::new(config.hidden_size, config.rms_norm_eps, device);
        Self {
            self_attn: Slot::build::<LlamaAttention<B>>(ctx, (config, layer_idx)),
            mlp: LlamaMLP::new(config, ctx),
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

impl<B: Backend> DecoderLayer<B> for LlamaDecoderLayer<B> {
    fn forward(
        &self,
        hidden_states: Tensor<B, 3>,
        position_embeddings: &PositionEmbeddings<B>,
        attention_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        LlamaDecoderLayer::forward(self, hidden_states, position_embeddings, attention_mask)
    }
}
