//! `LlamaDecoderLayer`: pre-norm attention and pre-norm MLP, each with a residual.

use burn::prelude::*;
use patcher_burn::{BuildContext, Slot};
use patcher_derive::Patchable;

use super::attention::LlamaAttention;
use super::config::LlamaConfig;
use super::interfaces::{LlamaAttentionInterface, LlamaDecoderLayerInterface, LlamaMLPInterface};
use super::norm_mlp::{LlamaMLP, LlamaRMSNorm};
use crate::common::{pre_norm_residuals, DecoderLayer, DecoderNormInterface, PositionEmbeddings};

/// transformers' `LlamaDecoderLayer`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(LlamaDecoderLayerInterface))]
pub struct LlamaDecoderLayer<B: Backend> {
    /// Self-attention: `LlamaAttention` or its replacement.
    pub self_attn: Slot<B, dyn LlamaAttentionInterface<B>>,
    /// The MLP: `LlamaMLP` or its replacement.
    pub mlp: Slot<B, dyn LlamaMLPInterface<B>>,
    /// Norm before attention: `LlamaRMSNorm` or its replacement.
    pub input_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
    /// Norm before the MLP.
    pub post_attention_layernorm: Slot<B, dyn DecoderNormInterface<B>>,
}

impl<B: Backend> LlamaDecoderLayer<B> {
    /// `LlamaDecoderLayer(config, layer_idx)`, its slot built through `ctx`.
    pub fn new(config: &LlamaConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        let norm =
            || Slot::build::<LlamaRMSNorm<B>>(ctx, (config.hidden_size, config.rms_norm_eps));
        Self {
            self_attn: Slot::build::<LlamaAttention<B>>(ctx, (config, layer_idx)),
            mlp: Slot::build::<LlamaMLP<B>>(ctx, config),
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
