//! `LlamaModel` (embeddings, layers, final norm) and `LlamaForCausalLM` (plus `lm_head`).

use burn::nn::Embedding;
use burn::prelude::*;
use patcher_burn::layers::{InitSlot, LinearSlot};
use patcher_burn::{BuildContext, BuildError, Patcher, Slot};

use super::config::LlamaConfig;
use super::decoder_layer::LlamaDecoderLayer;
use super::interfaces::LlamaDecoderLayerInterface;
use super::norm_mlp::LlamaRMSNorm;
use crate::common::{
    causal_lm_output, decoder_stack_forward, embedding, lm_head, CausalLMOutput,
    DecoderNormInterface, RotaryEmbedding,
};

/// transformers' `LlamaModel`.
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    /// `[vocab, hidden]`.
    pub embed_tokens: Embedding<B>,
    /// The decoder layers: `LlamaDecoderLayer` or its replacement.
    pub layers: Vec<Slot<B, dyn LlamaDecoderLayerInterface<B>>>,
    /// Final norm: `LlamaRMSNorm` or its replacement.
    pub norm: Slot<B, dyn DecoderNormInterface<B>>,
    #[module(skip)]
    rotary_emb: RotaryEmbedding,
}

impl<B: Backend> LlamaModel<B> {
    /// `LlamaModel(config)`, its slots built through `ctx`.
    pub fn new(config: &LlamaConfig, ctx: &BuildContext<'_, B>) -> Self {
        let device = ctx.device();
        Self {
            embed_tokens: embedding(
                config.vocab_size,
                config.hidden_size,
                config.initializer_range,
                device,
            ),
            layers: (0..config.num_hidden_layers)
                .map(|i| Slot::build::<LlamaDecoderLayer<B>>(ctx, (config, i)))
                .collect(),
            norm: Slot::build::<LlamaRMSNorm<B>>(ctx, (config.hidden_size, config.rms_norm_eps)),
            rotary_emb: RotaryEmbedding::new(&config.rope, config.head_dim),
        }
    }

    /// `input_ids [batch, seq]` (positions `0..seq`, no padding) to the final-normed hidden
    /// states, and all hidden states when asked (see [`CausalLMOutput::hidden_states`]).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        output_hidden_states: bool,
    ) -> (Tensor<B, 3>, Option<Vec<Tensor<B, 3>>>) {
        decoder_stack_forward(
            &self.embed_tokens,
            &self.rotary_emb,
            &self.layers,
            std::iter::repeat(None),
            |hidden| self.norm.forward(hidden),
            input_ids,
            output_hidden_states,
        )
    }
}

/// transformers' `LlamaForCausalLM`.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM<B: Backend> {
    /// The decoder.
    pub model: LlamaModel<B>,
    /// `hidden -> vocab`, no bias; `None` when `tie_word_embeddings` (the logits then use
    /// `model.embed_tokens.weight`, and the checkpoint has no `lm_head.weight` to load).
    pub lm_head: Option<LinearSlot<B>>,
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// `LlamaForCausalLM(config)` with every original class, parameters lazily initialised
    /// (nothing is allocated until loaded or used).
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        Self::build(config, &BuildContext::plain(device))
    }

    /// The model with `patcher`'s class substitutions.
    ///
    /// Errors when a `class_mapping` key names no substitutable class of this model (the message
    /// lists them, with a did-you-mean) or maps a class to a replacement of another interface.
    pub fn with_patcher(
        config: &LlamaConfig,
        patcher: &Patcher<B>,
        device: &B::Device,
    ) -> Result<Self, BuildError> {
        BuildContext::build(patcher, device, |ctx| Self::build(config, ctx))
    }

    /// The model built through `ctx` (what [`Self::new`] and [`Self::with_patcher`] call).
    pub fn build(config: &LlamaConfig, ctx: &BuildContext<'_, B>) -> Self {
        Self {
            model: LlamaModel::new(config, ctx),
            lm_head: lm_head(
                config.tie_word_embeddings,
                config.hidden_size,
                config.vocab_size,
                config.initializer_range,
            )
            .map(|c| c.init_slot(ctx)),
        }
    }

    /// `input_ids [batch, seq]` to logits `[batch, seq, vocab]`.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward_output(input_ids, false).logits
    }

    /// Logits and every hidden state (transformers' `output_hidden_states=True`).
    pub fn forward_with_hidden_states(&self, input_ids: Tensor<B, 2, Int>) -> CausalLMOutput<B> {
        self.forward_output(input_ids, true)
    }

    fn forward_output(
        &self,
        input_ids: Tensor<B, 2, Int>,
        output_hidden_states: bool,
    ) -> CausalLMOutput<B> {
        let model_output = self.model.forward(input_ids, output_hidden_states);
        causal_lm_output(
            self.lm_head.as_deref(),
            &self.model.embed_tokens,
            model_output,
        )
    }
}
