//! BERT's classes as transformers 5.23's `modeling_bert.py` writes them, each a slot with its
//! interface: embeddings, self-attention, self-output, attention, intermediate, output, layer,
//! pooler, encoder and model.

// transformers' parameter name `LayerNorm`.
#![allow(non_snake_case)]

use burn::module::Initializer;
use burn::nn::EmbeddingConfig;
use burn::prelude::*;
use patcher_burn::layers::{EmbeddingSlot, InitSlot, LayerNormSlot, LinearSlot};
use patcher_burn::{BuildContext, BuildError, Patcher, Slot};
use patcher_derive::{slot_interface, Patchable};

use super::config::BertConfig;
use crate::common::{
    eager_attention, encoder_inputs, encoder_stack_forward, Activation, AttentionInputs,
    AttentionSpec, EncoderBlock, EncoderEmbeddings, EncoderInputError, EncoderIntermediate,
    EncoderMask, EncoderOutput, EncoderPooler, EncoderSelfAttention, ResidualNormForward,
};

/// Classes that fill `BertModel.embeddings`: [`BertEmbeddings`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertEmbeddingsInterface<B: Backend>: EncoderEmbeddings<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertAttention.self`: [`BertSelfAttention`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertSelfAttentionInterface<B: Backend>: EncoderSelfAttention<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertAttention.output`: [`BertSelfOutput`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertSelfOutputInterface<B: Backend>: ResidualNormForward<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertLayer.attention`: [`BertAttention`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertAttentionInterface<B: Backend>: EncoderBlock<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertLayer.intermediate`: [`BertIntermediate`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertIntermediateInterface<B: Backend>: EncoderIntermediate<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertLayer.output`: [`BertOutput`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertOutputInterface<B: Backend>: ResidualNormForward<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertEncoder.layer`: [`BertLayer`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertLayerInterface<B: Backend>: EncoderBlock<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertModel.pooler`: [`BertPooler`] and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertPoolerInterface<B: Backend>: EncoderPooler<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// `nn.Linear(d_in, d_out)` with bias, normal-initialised, as a slot.
fn linear<B: Backend>(
    c: &BertConfig,
    d_in: usize,
    d_out: usize,
    ctx: &BuildContext<'_, B>,
) -> LinearSlot<B> {
    c.linear(d_in, d_out).init_slot(ctx)
}

/// `nn.LayerNorm(hidden_size, eps=layer_norm_eps)` as a slot.
fn layer_norm<B: Backend>(c: &BertConfig, ctx: &BuildContext<'_, B>) -> LayerNormSlot<B> {
    c.layer_norm().init_slot(ctx)
}

/// transformers' `BertEmbeddings`: word, position and token type embeddings, summed in
/// transformers' order (words + types + positions), then `LayerNorm`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertEmbeddingsInterface))]
pub struct BertEmbeddings<B: Backend> {
    /// `[vocab, hidden]`.
    pub word_embeddings: EmbeddingSlot<B>,
    /// `[max_position_embeddings, hidden]`, absolute positions.
    pub position_embeddings: EmbeddingSlot<B>,
    /// `[type_vocab_size, hidden]`.
    pub token_type_embeddings: EmbeddingSlot<B>,
    /// The norm of the sum.
    pub LayerNorm: LayerNormSlot<B>,
}

impl<B: Backend> BertEmbeddings<B> {
    /// `BertEmbeddings(config)`, its tables slots.
    pub fn new(c: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let normal = Initializer::Normal { mean: 0.0, std: c.initializer_range };
        let table = |rows| {
            let config = EmbeddingConfig::new(rows, c.hidden_size);
            config.with_initializer(normal.clone()).init_slot(ctx)
        };
        Self {
            word_embeddings: table(c.vocab_size),
            position_embeddings: table(c.max_position_embeddings),
            token_type_embeddings: table(c.type_vocab_size),
            LayerNorm: layer_norm(c, ctx),
        }
    }
}

impl<B: Backend> EncoderEmbeddings<B> for BertEmbeddings<B> {
    fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let seq = input_ids.dims()[1];
        let positions = Tensor::arange(0..seq as i64, &input_ids.device()).unsqueeze();
        let embeddings = self.word_embeddings.forward(input_ids)
            + self.token_type_embeddings.forward(token_type_ids)
            + self.position_embeddings.forward(positions);
        self.LayerNorm.forward(embeddings)
    }
}

/// transformers' `BertSelfAttention`: `query`, `key`, `value` (with biases), eager attention
/// without RoPE.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertSelfAttentionInterface))]
pub struct BertSelfAttention<B: Backend> {
    /// `hidden -> hidden`.
    pub query: LinearSlot<B>,
    /// `hidden -> hidden`.
    pub key: LinearSlot<B>,
    /// `hidden -> hidden`.
    pub value: LinearSlot<B>,
    #[module(skip)]
    spec: AttentionSpec,
}

impl<B: Backend> BertSelfAttention<B> {
    /// `BertSelfAttention(config)`, its linears slots.
    pub fn new(c: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let square = || linear(c, c.hidden_size, c.hidden_size, ctx);
        let spec = c.attention_spec();
        Self { query: square(), key: square(), value: square(), spec }
    }
}

impl<B: Backend> EncoderSelfAttention<B> for BertSelfAttention<B> {
    fn forward(&self, x: Tensor<B, 3>, mask: Option<&EncoderMask<B>>) -> Tensor<B, 3> {
        let [q, k, v] = [&self.query, &self.key, &self.value].map(|p| p.forward(x.clone()));
        let inputs = AttentionInputs { attention_mask: mask, ..Default::default() };
        eager_attention(&self.spec, [q, k, v], inputs)
    }
}

/// transformers' `BertSelfOutput`: `LayerNorm(dense(x) + residual)`, `hidden -> hidden`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertSelfOutputInterface))]
pub struct BertSelfOutput<B: Backend> {
    /// `hidden -> hidden`.
    pub dense: LinearSlot<B>,
    /// The norm of the sum with the residual.
    pub LayerNorm: LayerNormSlot<B>,
}

impl<B: Backend> BertSelfOutput<B> {
    /// `BertSelfOutput(config)`, its layers slots.
    pub fn new(c: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let dense = linear(c, c.hidden_size, c.hidden_size, ctx);
        Self { dense, LayerNorm: layer_norm(c, ctx) }
    }
}

impl<B: Backend> ResidualNormForward<B> for BertSelfOutput<B> {
    fn forward(&self, x: Tensor<B, 3>, input_tensor: Tensor<B, 3>) -> Tensor<B, 3> {
        self.LayerNorm.forward(self.dense.forward(x) + input_tensor)
    }
}

/// transformers' `BertAttention`: `output(self(x), x)` (its `self` is `self_` here).
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertAttentionInterface))]
pub struct BertAttention<B: Backend> {
    /// [`BertSelfAttention`] or its replacement (checkpoint name `self`).
    pub self_: Slot<B, dyn BertSelfAttentionInterface<B>>,
    /// [`BertSelfOutput`] or its replacement.
    pub output: Slot<B, dyn BertSelfOutputInterface<B>>,
}

impl<B: Backend> BertAttention<B> {
    /// `BertAttention(config)`, its slots built through `ctx`.
    pub fn new(c: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        Self {
            self_: Slot::build::<BertSelfAttention<B>>(ctx, c),
            output: Slot::build::<BertSelfOutput<B>>(ctx, c),
        }
    }
}

impl<B: Backend> EncoderBlock<B> for BertAttention<B> {
    fn forward(&self, x: Tensor<B, 3>, mask: Option<&EncoderMask<B>>) -> Tensor<B, 3> {
        self.output.forward(self.self_.forward(x.clone(), mask), x)
    }
}

/// transformers' `BertIntermediate`: `act(dense(x))`, `hidden -> intermediate`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertIntermediateInterface))]
pub struct BertIntermediate<B: Backend> {
    /// `hidden -> intermediate`.
    pub dense: LinearSlot<B>,
    #[module(skip)]
    act: Activation,
}

impl<B: Backend> BertIntermediate<B> {
    /// `BertIntermediate(config)`, its linear a slot.
    pub fn new(c: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let dense = linear(c, c.hidden_size, c.intermediate_size, ctx);
        Self { dense, act: c.hidden_act }
    }
}

impl<B: Backend> EncoderIntermediate<B> for BertIntermediate<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.act.forward(self.dense.forward(x))
    }
}

/// transformers' `BertOutput`: `LayerNorm(dense(x) + residual)`, `intermediate -> hidden`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertOutputInterface))]
pub struct BertOutput<B: Backend> {
    /// `intermediate -> hidden`.
    pub dense: LinearSlot<B>,
    /// The norm of the sum with the residual.
    pub LayerNorm: LayerNormSlot<B>,
}

impl<B: Backend> BertOutput<B> {
    /// `BertOutput(config)`, its layers slots.
    pub fn new(c: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let dense = linear(c, c.intermediate_size, c.hidden_size, ctx);
        Self { dense, LayerNorm: layer_norm(c, ctx) }
    }
}

impl<B: Backend> ResidualNormForward<B> for BertOutput<B> {
    fn forward(&self, x: Tensor<B, 3>, input_tensor: Tensor<B, 3>) -> Tensor<B, 3> {
        self.LayerNorm.forward(self.dense.forward(x) + input_tensor)
    }
}

/// transformers' `BertLayer` (no cross-attention): `output(intermediate(a), a)` with
/// `a = attention(x)`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertLayerInterface))]
pub struct BertLayer<B: Backend> {
    /// [`BertAttention`] or its replacement.
    pub attention: Slot<B, dyn BertAttentionInterface<B>>,
    /// [`BertIntermediate`] or its replacement.
    pub intermediate: Slot<B, dyn BertIntermediateInterface<B>>,
    /// [`BertOutput`] or its replacement.
    pub output: Slot<B, dyn BertOutputInterface<B>>,
}

impl<B: Backend> BertLayer<B> {
    /// `BertLayer(config)`, its slots built through `ctx`.
    pub fn new(c: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        Self {
            attention: Slot::build::<BertAttention<B>>(ctx, c),
            intermediate: Slot::build::<BertIntermediate<B>>(ctx, c),
            output: Slot::build::<BertOutput<B>>(ctx, c),
        }
    }
}

impl<B: Backend> EncoderBlock<B> for BertLayer<B> {
    fn forward(&self, x: Tensor<B, 3>, mask: Option<&EncoderMask<B>>) -> Tensor<B, 3> {
        let attention = self.attention.forward(x, mask);
        let intermediate = self.intermediate.forward(attention.clone());
        self.output.forward(intermediate, attention)
    }
}

/// transformers' `BertPooler`: `tanh(dense(x[:, 0]))`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertPoolerInterface))]
pub struct BertPooler<B: Backend> {
    /// `hidden -> hidden`.
    pub dense: LinearSlot<B>,
}

impl<B: Backend> BertPooler<B> {
    /// `BertPooler(config)`, its linear a slot.
    pub fn new(c: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let dense = linear(c, c.hidden_size, c.hidden_size, ctx);
        Self { dense }
    }
}

impl<B: Backend> EncoderPooler<B> for BertPooler<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        let first_token = x.narrow(1, 0, 1).squeeze_dim(1);
        self.dense.forward(first_token).tanh()
    }
}

/// transformers' `BertEncoder`: the layers.
#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    /// [`BertLayer`]s or their replacements.
    pub layer: Vec<Slot<B, dyn BertLayerInterface<B>>>,
}

/// transformers' `BertModel` (with its pooler).
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    /// [`BertEmbeddings`] or its replacement.
    pub embeddings: Slot<B, dyn BertEmbeddingsInterface<B>>,
    /// The layers.
    pub encoder: BertEncoder<B>,
    /// [`BertPooler`] or its replacement.
    pub pooler: Slot<B, dyn BertPoolerInterface<B>>,
    #[module(skip)]
    max_position_embeddings: usize,
}

impl<B: Backend> BertModel<B> {
    /// The model with every original class (parameters initialised lazily).
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        Self::build(config, &BuildContext::plain(device))
    }

    /// The model with `patcher`'s class substitutions (errors name a class the model lacks).
    pub fn with_patcher(
        config: &BertConfig,
        patcher: &Patcher<B>,
        device: &B::Device,
    ) -> Result<Self, BuildError> {
        BuildContext::build(patcher, device, |ctx| Self::build(config, ctx))
    }

    /// The model built through `ctx`.
    pub fn build(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let layers =
            (0..config.num_hidden_layers).map(|_| Slot::build::<BertLayer<B>>(ctx, config));
        Self {
            embeddings: Slot::build::<BertEmbeddings<B>>(ctx, config),
            encoder: BertEncoder { layer: layers.collect() },
            pooler: Slot::build::<BertPooler<B>>(ctx, config),
            max_position_embeddings: config.max_position_embeddings,
        }
    }

    /// `input_ids [batch, seq]`, `token_type_ids` (zeros if `None`) and `attention_mask` (`1`
    /// keep, `0` padding; all kept if `None`), positions `0..seq`, to the last hidden state,
    /// the pooled output and, when asked, every hidden state. A padded position still gets an
    /// output (it attends the kept keys), as in transformers; a row padded throughout does not
    /// match transformers' (uniform attention there, no attention here). Ids must be below
    /// `vocab_size` and `type_vocab_size`, as for the decoders' `input_ids` (checking would read
    /// them back from the device).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Option<Tensor<B, 2, Int>>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        output_hidden_states: bool,
    ) -> Result<EncoderOutput<B>, EncoderInputError> {
        let max = self.max_position_embeddings;
        let inputs = encoder_inputs(&input_ids, token_type_ids, attention_mask, max)?;
        Ok(encoder_stack_forward(
            self.embeddings.forward(input_ids, inputs.token_type_ids),
            self.encoder.layer.iter().map(|layer| &**layer),
            |hidden| self.pooler.forward(hidden),
            inputs.mask.as_ref(),
            output_hidden_states,
        ))
    }
}
