//! What BERT-style encoders share (BERT, and the families built like it): the config core, the
//! forward traits of their substitutable classes, the model's output and input errors, and the
//! encoder stack's forward. The classes are written, with each family's names, by the macros of
//! [`encoder_family`](super::encoder_family).

use burn::module::Initializer;
use burn::nn::{EmbeddingConfig, LayerNormConfig, LinearConfig};
use burn::prelude::*;
use patcher_burn::layers::{EmbeddingSlot, InitSlot, LayerNormSlot, LinearSlot};
use patcher_burn::BuildContext;
use patcher_core::{WeightRenaming, WeightTransform};
use serde::Deserialize;
use serde_json::Value;

use super::config::parse_config_json;
use super::limits::{self, ModelSize, ParamCount, SizedConfig};
use super::limits::{MAX_DIMENSION, MAX_HEADS, MAX_LAYERS};
use super::{linear_config, Activation, AttentionSpec};
use crate::error::ConfigError;

/// The fields of transformers' `BertConfig` (and of the configs built like it) that an encoder
/// reads; `Default` is `BertConfig()`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct EncoderConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads (they divide `hidden_size` evenly).
    pub num_attention_heads: usize,
    /// Width of the intermediate (feed-forward) layer.
    pub intermediate_size: usize,
    /// `hidden_act` (`"gelu"`: the exact GELU).
    #[serde(skip)]
    pub hidden_act: Activation,
    /// Rows of the position embedding table: the longest input.
    pub max_position_embeddings: usize,
    /// Token types (segments).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id (it only matters in training).
    pub pad_token_id: Option<usize>,
    /// Standard deviation of the normal init.
    pub initializer_range: f64,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
            initializer_range: 0.02,
        }
    }
}

impl EncoderConfig {
    /// Parses and validates a `config.json` of `model_type` (a config naming another type is
    /// [`ConfigError::Invalid`]); unknown keys are ignored. Relative position embeddings and
    /// an encoder used as a decoder are [`ConfigError::Unsupported`].
    pub fn from_json_str(json: &str, model_type: &str) -> Result<Self, ConfigError> {
        let (root, mut config) = parse_config_json::<Self>(json)?;
        let get = |key: &str| root.get(key).filter(|v| !v.is_null());
        let unsupported = |what: String| Err(ConfigError::Unsupported(what));
        if let Some(kind) = get("model_type").filter(|v| v.as_str() != Some(model_type)) {
            let message = format!("model_type is {kind}, expected \"{model_type}\"");
            return Err(ConfigError::Invalid(message));
        }
        let position = get("position_embedding_type");
        if let Some(kind) = position.filter(|v| v.as_str() != Some("absolute")) {
            return unsupported(format!(
                "position_embedding_type {kind} (only \"absolute\")"
            ));
        }
        if ["is_decoder", "add_cross_attention"]
            .map(get)
            .contains(&Some(&Value::Bool(true)))
        {
            return unsupported("an encoder as a decoder (is_decoder, add_cross_attention)".into());
        }
        if let Some(act) = get("hidden_act") {
            config.hidden_act = Activation::from_name(act.as_str().unwrap_or_default())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks each size is positive and within [`limits`](crate::common::limits), the floats
    /// finite, the heads divide the width; `from_json_str` calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value, max) in [
            ("vocab_size", self.vocab_size, MAX_DIMENSION),
            ("hidden_size", self.hidden_size, MAX_DIMENSION),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("intermediate_size", self.intermediate_size, MAX_DIMENSION),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_DIMENSION,
            ),
            ("type_vocab_size", self.type_vocab_size, MAX_DIMENSION),
        ] {
            limits::size(field, value, max)?;
        }
        limits::float("layer_norm_eps", self.layer_norm_eps, true)?;
        limits::float("initializer_range", self.initializer_range, false)?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ConfigError::Field {
                field: "num_attention_heads".into(),
                value: self.num_attention_heads.to_string(),
                reason: format!("must divide hidden_size ({})", self.hidden_size),
            });
        }
        self.model_size().map(drop)
    }

    /// Every layer's self-attention shape: q/k/v with biases, as many key/value heads as heads.
    pub fn attention_spec(&self) -> AttentionSpec {
        AttentionSpec::new(self.hidden_size, self.num_attention_heads)
            .with_qkv_bias(true)
            .with_o_bias(true)
            .with_initializer_range(self.initializer_range)
    }

    /// `nn.Linear(d_in, d_out)`, normal-initialised.
    pub fn linear(&self, d_in: usize, d_out: usize) -> LinearConfig {
        linear_config(d_in, d_out, true, self.initializer_range)
    }

    /// `nn.LayerNorm(hidden_size, eps=layer_norm_eps)`.
    pub fn layer_norm(&self) -> LayerNormConfig {
        LayerNormConfig::new(self.hidden_size).with_epsilon(self.layer_norm_eps)
    }
}

impl SizedConfig for EncoderConfig {
    fn model_size(&self) -> Result<ModelSize, ConfigError> {
        let (l, h) = (self.num_hidden_layers, ("hidden_size", self.hidden_size));
        let i = ("intermediate_size", self.intermediate_size);
        let mut p = ParamCount::default();
        p.add(1, &[("vocab_size", self.vocab_size), h])?;
        p.add(
            1,
            &[("max_position_embeddings", self.max_position_embeddings), h],
        )?;
        p.add(1, &[("type_vocab_size", self.type_vocab_size), h])?;
        p.add(4 * l + 1, &[h, h])?; // query, key, value, attention output; pooler
        p.add(2 * l, &[h, i])?; // intermediate, output
        p.add(9 * l + 3, &[h])?; // biases and LayerNorms
        p.add(l, &[i])?; // intermediate bias
        p.finish_sizes([self.vocab_size, self.hidden_size, l], None)
    }
}

/// An `nn.Embedding(rows, hidden_size)`, normal-initialised, as a slot.
pub fn embedding_slot<B: Backend>(
    config: &EncoderConfig,
    rows: usize,
    ctx: &BuildContext<'_, B>,
) -> EmbeddingSlot<B> {
    let normal = Initializer::Normal {
        mean: 0.0,
        std: config.initializer_range,
    };
    let table = EmbeddingConfig::new(rows, config.hidden_size).with_initializer(normal);
    table.init_slot(ctx)
}

/// An `nn.Linear(d_in, d_out)` with bias, normal-initialised, as a slot.
pub fn linear_slot<B: Backend>(
    config: &EncoderConfig,
    d_in: usize,
    d_out: usize,
    ctx: &BuildContext<'_, B>,
) -> LinearSlot<B> {
    config.linear(d_in, d_out).init_slot(ctx)
}

/// An `nn.Linear(hidden_size, hidden_size)` with bias, normal-initialised, as a slot.
pub fn square_linear_slot<B: Backend>(
    config: &EncoderConfig,
    ctx: &BuildContext<'_, B>,
) -> LinearSlot<B> {
    linear_slot(config, config.hidden_size, config.hidden_size, ctx)
}

/// `nn.LayerNorm(hidden_size, eps=layer_norm_eps)` as a slot.
pub fn layer_norm_slot<B: Backend>(
    config: &EncoderConfig,
    ctx: &BuildContext<'_, B>,
) -> LayerNormSlot<B> {
    config.layer_norm().init_slot(ctx)
}

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
            return Err(EncoderInputError::Shape {
                name,
                found,
                expected,
            });
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

/// transformers' `BertAttention.self` is `self_` here (Rust cannot name a field `self`): the
/// renaming of checkpoint keys to it on load (and back on save).
pub fn encoder_weight_conversions() -> Vec<WeightTransform> {
    let renaming = WeightRenaming::new(r"\.attention\.self\.", ".attention.self_.");
    vec![renaming.expect("a valid pattern").into()]
}
