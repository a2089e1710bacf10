//! What BERT-style encoders share (BERT, and a user's family built like it): the forward traits
//! of their substitutable classes, the model's output and input errors, and the encoder stack's
//! forward.

use burn::prelude::*;

/// A `[batch, 1, seq, seq]` mask, `true` where a query may not attend a key (padding).
pub type EncoderMask<B> = Tensor<B, 4, Bool>;

/// An encoder's embeddings (`BertEmbeddings`, ...).
pub trait EncoderEmbeddings<B: Backend> {
    /// `input_ids`, `token_type_ids [batch, seq]` (positions `0..seq`) to `[batch, seq, hidden]`.
    fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3>;
}

/// An encoder layer's self-attention (`BertSelfAttention`, ...): `[batch, seq, hidden]` to the
/// merged heads, `[batch, seq, hidden]`.
pub trait EncoderSelfAttention<B: Backend> {
    /// The heads of `hidden_states`, attending as `mask` allows.
    fn forward(&self, hidden_states: Tensor<B, 3>, mask: Option<&EncoderMask<B>>) -> Tensor<B, 3>;
}

/// What `BertSelfOutput` and `BertOutput` compute: dense, then LayerNorm of the sum with the
/// residual; `hidden_states [batch, seq, d_in]`, `input_tensor [batch, seq, hidden]`.
pub trait ResidualNormForward<B: Backend> {
    /// `LayerNorm(dense(hidden_states) + input_tensor)`.
    fn forward(&self, hidden_states: Tensor<B, 3>, input_tensor: Tensor<B, 3>) -> Tensor<B, 3>;
}

/// What `BertAttention` and `BertLayer` compute: `[batch, seq, hidden]` to the same.
pub trait EncoderBlock<B: Backend> {
    /// The block on `hidden_states`, attending as `mask` allows.
    fn forward(&self, hidden_states: Tensor<B, 3>, mask: Option<&EncoderMask<B>>) -> Tensor<B, 3>;
}

/// A layer's intermediate (`BertIntermediate`, ...): `[batch, seq, hidden]` to
/// `act(dense(x))`, `[batch, seq, intermediate]`.
pub trait EncoderIntermediate<B: Backend> {
    /// `act(dense(hidden_states))`.
    fn forward(&self, hidden_states: Tensor<B, 3>) -> Tensor<B, 3>;
}

/// An encoder's pooler (`BertPooler`, ...): `[batch, seq, hidden]` to `tanh(dense(x[:, 0]))`,
/// `[batch, hidden]`.
pub trait EncoderPooler<B: Backend> {
    /// The pooled first token.
    fn forward(&self, hidden_states: Tensor<B, 3>) -> Tensor<B, 2>;
}

/// What an encoder model's `forward` returns (transformers' `BaseModelOutputWithPooling`).
#[derive(Debug, Clone)]
pub struct EncoderOutput<B: Backend> {
    /// The last layer's output, `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// The pooler's output, `[batch, hidden]`.
    pub pooler_output: Tensor<B, 2>,
    /// When asked: the embeddings' output, then each layer's (`num_hidden_layers + 1`, the
    /// last being `last_hidden_state`), as transformers' `output_hidden_states=True`.
    pub hidden_states: Option<Vec<Tensor<B, 3>>>,
}

/// Why an encoder model's `forward` refused its inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncoderInputError {
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

/// What [`encoder_inputs`] makes of an encoder's optional inputs.
#[derive(Debug, Clone)]
pub struct EncoderInputs<B: Backend> {
    /// `[batch, seq]`, zeros when not given.
    pub token_type_ids: Tensor<B, 2, Int>,
    /// The bidirectional attention mask, when there is padding.
    pub mask: Option<EncoderMask<B>>,
}

/// An encoder model's inputs, checked: `token_type_ids` (zeros if `None`) and the padding
/// `attention_mask` (`1` keep, `0` padding) as the bidirectional mask (a padded key is hidden
/// from every query), for `input_ids [batch, seq]` of at most `max_positions` tokens.
pub fn encoder_inputs<B: Backend>(
    input_ids: &Tensor<B, 2, Int>,
    token_type_ids: Option<Tensor<B, 2, Int>>,
    attention_mask: Option<Tensor<B, 2, Int>>,
    max_positions: usize,
) -> Result<EncoderInputs<B>, EncoderInputError> {
    let expected @ [batch, seq] = input_ids.dims();
    if seq > max_positions {
        let max = max_positions;
        return Err(EncoderInputError::TooLong { seq, max });
    }
    for (name, found) in [
        ("token_type_ids", &token_type_ids),
        ("attention_mask", &attention_mask),
    ] {
        if let Some(found) = found.as_ref().map(Tensor::dims).filter(|&d| d != expected) {
            return Err(EncoderInputError::Shape { name, found, expected });
        }
    }
    let mask = attention_mask.map(|m| m.equal_elem(0).reshape([batch, 1, 1, seq]));
    Ok(EncoderInputs {
        token_type_ids: token_type_ids.unwrap_or_else(|| input_ids.zeros_like()),
        mask: mask.map(|m| m.expand([batch, 1, seq, seq])),
    })
}

/// The embeddings' output through each layer, then the pooler, keeping every hidden state
/// when asked.
pub fn encoder_stack_forward<B: Backend, L: EncoderBlock<B> + ?Sized>(
    embedded: Tensor<B, 3>,
    layers: impl IntoIterator<Item = impl std::ops::Deref<Target = L>>,
    pooler: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 2>,
    mask: Option<&EncoderMask<B>>,
    output_hidden_states: bool,
) -> EncoderOutput<B> {
    let mut hidden = embedded;
    let mut hidden_states = output_hidden_states.then(|| vec![hidden.clone()]);
    for layer in layers {
        hidden = layer.forward(hidden, mask);
        if let Some(states) = hidden_states.as_mut() {
            states.push(hidden.clone());
        }
    }
    EncoderOutput {
        pooler_output: pooler(hidden.clone()),
        last_hidden_state: hidden,
        hidden_states,
    }
}
