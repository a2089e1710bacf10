//! `LlamaModel` (embeddings, layers, final norm) and `LlamaForCausalLM` (plus `lm_head`).

use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use patcher_burn::{BuildContext, BuildError};
use patcher_core::Patcher;

use super::config::LlamaConfig;
use super::decoder_layer::LlamaDecoderLayer;
use super::norm_mlp::LlamaRMSNorm;
use crate::common::{causal_mask, embedding, linear, CausalLMOutput, RotaryEmbedding};

/// transformers' `LlamaModel`.
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    /// `[vocab, hidden]`.
    pub embed_tokens: Embedding<B>,
    /// The decoder layers.
    pub layers: Vec<LlamaDecoderLayer<B>>,
    /// Final norm.
    pub norm: LlamaRMSNorm<B>,
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
                .map(|i| LlamaDecoderLayer::new(config, i, ctx))
                .collect(),
            norm: LlamaRMSNorm::new(config.hidden_size, config.rms_norm_eps, device),
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
        let device = input_ids.device();
        let [_, seq] = input_ids.dims();
        let mut hidden = self.embed_tokens.forward(input_ids);
        let position_embeddings = self.rotary_emb.forward::<B>(seq, &device);
        let mask = causal_mask::<B>(seq, None, &device);
        let mut all = output_hidden_states.then(Vec::new);
        for layer in &self.layers {
            if let Some(all) = all.as_mut() {
                all.push(hidden.clone());
            }
            hidden = layer.forward(hidden, &position_embeddings, Some(&mask));
        }
        let hidden = self.norm.forward(hidden);
        if let Some(all) = all.as_mut() {
            // transformers replaces the last layer's raw output with the normed one.
            all.push(hidden.clone());
        }
        (hidden, all)
    }
}

/// transformers' `LlamaForCausalLM`.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM<B: Backend> {
    /// The decoder.
    pub model: LlamaModel<B>,
    /// `hidden -> vocab`, no bias; `None` when `tie_word_embeddings` (the logits then use
    /// `model.embed_tokens.weight`, and the checkpoint has no `lm_head.weight` to load).
    pub lm_head: Option<Linear<B>>,
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
        let device = ctx.device();
        Self {
            model: LlamaModel::new(config, ctx),
            lm_head: (!config.tie_word_embeddings).then(|| {
                linear(
                    config.hidden_size,
                    config.vocab_size,
                    false,
                    config.initializer_range,
                    device,
                )
            }),
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
        let (hidden, hidden_states) = self.model.forward(input_ids, output_hidden_states);
        let logits = match &self.lm_head {
            Some(lm_head) => lm_head.forward(hidden),
            None => hidden.matmul(self.model.embed_tokens.weight.val().transpose().unsqueeze()),
        };
        CausalLMOutput {
            logits,
            hidden_states,
        }
    }
}
