//! `BertEmbeddings`, the classes of a `BertLayer`, and the layer.

// transformers' parameter names: `LayerNorm`.
#![allow(non_snake_case)]

use burn::module::Initializer;
use burn::nn::EmbeddingConfig;
use burn::prelude::*;
use patcher_burn::layers::{EmbeddingSlot, InitSlot, LayerNormSlot, LinearSlot};
use patcher_burn::{BuildContext, Patchable, Slot};

use super::interfaces::*;
use super::BertConfig;
use crate::common::{eager_attention_without_rope, Activation, AttentionSpec};

/// transformers' `BertEmbeddings`: word, position and token type embeddings, summed, normed.
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
    /// `BertEmbeddings(config)`.
    pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let std = config.initializer_range;
        let table = |rows| {
            let normal = Initializer::Normal { mean: 0.0, std };
            let table = EmbeddingConfig::new(rows, config.hidden_size).with_initializer(normal);
            table.init_slot(ctx)
        };
        Self {
            word_embeddings: table(config.vocab_size),
            position_embeddings: table(config.max_position_embeddings),
            token_type_embeddings: table(config.type_vocab_size),
            LayerNorm: config.layer_norm().init_slot(ctx),
        }
    }
}

impl<B: Backend> BertEmbeddingsInterface<B> for BertEmbeddings<B> {
    fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_types: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let seq = input_ids.dims()[1];
        let positions = Tensor::arange(0..seq as i64, &input_ids.device()).unsqueeze();
        // transformers' order: (words + token types) + positions.
        let embeddings = self.word_embeddings.forward(input_ids)
            + self.token_type_embeddings.forward(token_types)
            + self.position_embeddings.forward(positions);
        self.LayerNorm.forward(embeddings)
    }
}

/// transformers' `BertSelfAttention`: `query`, `key`, `value`, eager attention (no RoPE).
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
    /// `BertSelfAttention(config)`.
    pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let linear = || {
            config
                .linear(config.hidden_size, config.hidden_size)
                .init_slot(ctx)
        };
        let (query, key, value) = (linear(), linear(), linear());
        let spec = config.attention_spec();
        Self {
            query,
            key,
            value,
            spec,
        }
    }
}

impl<B: Backend> BertSelfAttentionInterface<B> for BertSelfAttention<B> {
    fn forward(&self, x: Tensor<B, 3>, mask: Option<&BertMask<B>>) -> Tensor<B, 3> {
        let [q, k] = [&self.query, &self.key].map(|p| p.forward(x.clone()));
        eager_attention_without_rope(&self.spec, q, k, self.value.forward(x), mask)
    }
}

/// `BertSelfOutput` and `BertOutput`: a `dense` from `$d_in` and a `LayerNorm`.
macro_rules! residual_class {
    ($name:ident, $interface:ident, $d_in:ident) => {
        #[doc = concat!("transformers' `", stringify!($name), "`.")]
        #[derive(Module, Patchable, Debug)]
        #[patchable(crate = "patcher_burn", implements($interface))]
        pub struct $name<B: Backend> {
            #[doc = concat!("`", stringify!($d_in), " -> hidden`.")]
            pub dense: LinearSlot<B>,
            /// The norm of the sum with the residual.
            pub LayerNorm: LayerNormSlot<B>,
        }

        impl<B: Backend> $name<B> {
            #[doc = concat!("`", stringify!($name), "(config)`.")]
            pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
                let dense = config
                    .linear(config.$d_in, config.hidden_size)
                    .init_slot(ctx);
                let LayerNorm = config.layer_norm().init_slot(ctx);
                Self { dense, LayerNorm }
            }
        }

        impl<B: Backend> BertResidualForward<B> for $name<B> {
            fn forward(&self, x: Tensor<B, 3>, input_tensor: Tensor<B, 3>) -> Tensor<B, 3> {
                self.LayerNorm.forward(self.dense.forward(x) + input_tensor)
            }
        }
    };
}

residual_class!(BertSelfOutput, BertSelfOutputInterface, hidden_size);
residual_class!(BertOutput, BertOutputInterface, intermediate_size);

/// transformers' `BertAttention`: `self` (here `self_`, a Rust keyword; see the module docs)
/// and `output`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertAttentionInterface))]
pub struct BertAttention<B: Backend> {
    /// `BertSelfAttention` or its replacement (checkpoint name `self`).
    pub self_: Slot<B, dyn BertSelfAttentionInterface<B>>,
    /// `BertSelfOutput` or its replacement.
    pub output: Slot<B, dyn BertSelfOutputInterface<B>>,
}

impl<B: Backend> BertAttention<B> {
    /// `BertAttention(config)`.
    pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let self_ = Slot::build::<BertSelfAttention<B>>(ctx, config);
        let output = Slot::build::<BertSelfOutput<B>>(ctx, config);
        Self { self_, output }
    }
}

impl<B: Backend> BertBlockForward<B> for BertAttention<B> {
    fn forward(&self, x: Tensor<B, 3>, mask: Option<&BertMask<B>>) -> Tensor<B, 3> {
        self.output.forward(self.self_.forward(x.clone(), mask), x)
    }
}

/// transformers' `BertIntermediate`: `act(dense(x))`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertIntermediateInterface))]
pub struct BertIntermediate<B: Backend> {
    /// `hidden -> intermediate`.
    pub dense: LinearSlot<B>,
    #[module(skip)]
    act: Activation,
}

impl<B: Backend> BertIntermediate<B> {
    /// `BertIntermediate(config)`.
    pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let dense = config.linear(config.hidden_size, config.intermediate_size);
        let (dense, act) = (dense.init_slot(ctx), config.hidden_act);
        Self { dense, act }
    }
}

impl<B: Backend> BertIntermediateInterface<B> for BertIntermediate<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.act.forward(self.dense.forward(x))
    }
}

/// transformers' `BertLayer` (an encoder layer: no cross-attention).
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertLayerInterface))]
pub struct BertLayer<B: Backend> {
    /// `BertAttention` or its replacement.
    pub attention: Slot<B, dyn BertAttentionInterface<B>>,
    /// `BertIntermediate` or its replacement.
    pub intermediate: Slot<B, dyn BertIntermediateInterface<B>>,
    /// `BertOutput` or its replacement.
    pub output: Slot<B, dyn BertOutputInterface<B>>,
}

impl<B: Backend> BertLayer<B> {
    /// `BertLayer(config)`.
    pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        Self {
            attention: Slot::build::<BertAttention<B>>(ctx, config),
            intermediate: Slot::build::<BertIntermediate<B>>(ctx, config),
            output: Slot::build::<BertOutput<B>>(ctx, config),
        }
    }
}

impl<B: Backend> BertBlockForward<B> for BertLayer<B> {
    fn forward(&self, x: Tensor<B, 3>, mask: Option<&BertMask<B>>) -> Tensor<B, 3> {
        let attention = self.attention.forward(x, mask);
        self.output
            .forward(self.intermediate.forward(attention.clone()), attention)
    }
}
