//! `BertEncoder`, `BertPooler` and `BertModel`.

use burn::prelude::*;
use patcher_burn::layers::{InitSlot, LinearSlot};
use patcher_burn::{BuildContext, Patchable, Slot};

use super::interfaces::*;
use super::layer::{BertEmbeddings, BertLayer};
use super::BertConfig;

/// transformers' `BertEncoder`.
#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    /// The layers: `BertLayer` or its replacement.
    pub layer: Vec<Slot<B, dyn BertLayerInterface<B>>>,
}

/// transformers' `BertPooler`: `tanh(dense(x[:, 0]))`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(BertPoolerInterface))]
pub struct BertPooler<B: Backend> {
    /// `hidden -> hidden`.
    pub dense: LinearSlot<B>,
}

impl<B: Backend> BertPooler<B> {
    /// `BertPooler(config)`.
    pub fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let dense = config.linear(config.hidden_size, config.hidden_size);
        Self {
            dense: dense.init_slot(ctx),
        }
    }
}

impl<B: Backend> BertPoolerInterface<B> for BertPooler<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        let first_token = x.narrow(1, 0, 1).squeeze_dim(1);
        self.dense.forward(first_token).tanh()
    }
}

/// What [`BertModel::forward`] returns (transformers' `BaseModelOutputWithPooling`).
#[derive(Debug, Clone)]
pub struct BertModelOutput<B: Backend> {
    /// The last layer's output, `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// The pooler's output, `[batch, hidden]`.
    pub pooler_output: Tensor<B, 2>,
    /// When asked: the embeddings' output, then each layer's (`num_hidden_layers + 1`, the
    /// last being `last_hidden_state`), as transformers' `output_hidden_states=True`.
    pub hidden_states: Option<Vec<Tensor<B, 3>>>,
}

/// Why [`BertModel::forward`] refused its inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BertInputError {
    /// Longer than the position embedding table.
    #[error("sequence of {seq} tokens, longer than max_position_embeddings ({max})")]
    TooLong {
        /// The input's length.
        seq: usize,
        /// `max_position_embeddings`.
        max: usize,
    },
    /// `token_type_ids` or `attention_mask` is not shaped like `input_ids`.
    #[error("{name} has shape {found:?}, input_ids {expected:?}")]
    Shape {
        /// The argument.
        name: &'static str,
        /// Its shape.
        found: [usize; 2],
        /// `input_ids`' shape.
        expected: [usize; 2],
    },
}

/// transformers' `BertModel` (with its pooler).
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    /// `BertEmbeddings` or its replacement.
    pub embeddings: Slot<B, dyn BertEmbeddingsInterface<B>>,
    /// The layers.
    pub encoder: BertEncoder<B>,
    /// `BertPooler` or its replacement.
    pub pooler: Slot<B, dyn BertPoolerInterface<B>>,
    #[module(skip)]
    max_position_embeddings: usize,
}

impl<B: Backend> BertModel<B> {
    crate::common::root_model_constructors!(BertModel, BertConfig);

    /// The model built through `ctx` (what [`Self::new`] and [`Self::with_patcher`] call).
    pub fn build(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self {
        let layers =
            (0..config.num_hidden_layers).map(|_| Slot::build::<BertLayer<B>>(ctx, config));
        Self {
            embeddings: Slot::build::<BertEmbeddings<B>>(ctx, config),
            encoder: BertEncoder {
                layer: layers.collect(),
            },
            pooler: Slot::build::<BertPooler<B>>(ctx, config),
            max_position_embeddings: config.max_position_embeddings,
        }
    }

    /// `input_ids [batch, seq]`, `token_type_ids` (zeros if `None`) and `attention_mask` (`1`
    /// keep, `0` padding; all kept if `None`), positions `0..seq`, to the last hidden state, the
    /// pooled output and, when asked, every hidden state. A padded position still gets an
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
    ) -> Result<BertModelOutput<B>, BertInputError> {
        let expected @ [batch, seq] = input_ids.dims();
        if seq > self.max_position_embeddings {
            return Err(BertInputError::TooLong {
                seq,
                max: self.max_position_embeddings,
            });
        }
        for (name, found) in [
            ("token_type_ids", &token_type_ids),
            ("attention_mask", &attention_mask),
        ] {
            if let Some(found) = found.as_ref().map(Tensor::dims).filter(|&d| d != expected) {
                return Err(BertInputError::Shape {
                    name,
                    found,
                    expected,
                });
            }
        }
        let types = token_type_ids.unwrap_or_else(|| input_ids.zeros_like());
        // transformers' bidirectional mask: a padded key is hidden from every query.
        let mask = attention_mask.map(|m| m.equal_elem(0).reshape([batch, 1, 1, seq]));
        let mask = mask.map(|m| m.expand([batch, 1, seq, seq]));
        let mut hidden = self.embeddings.forward(input_ids, types);
        let mut hidden_states = output_hidden_states.then(|| vec![hidden.clone()]);
        for layer in &self.encoder.layer {
            hidden = layer.forward(hidden, mask.as_ref());
            if let Some(states) = hidden_states.as_mut() {
                states.push(hidden.clone());
            }
        }
        let pooler_output = self.pooler.forward(hidden.clone());
        Ok(BertModelOutput {
            last_hidden_state: hidden,
            pooler_output,
            hidden_states,
        })
    }
}
