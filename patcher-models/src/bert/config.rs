//! `BertConfig`, read from a checkpoint's `config.json` with transformers 5.23's defaults.

use std::path::Path;

use burn::nn::{LayerNormConfig, LinearConfig};
use serde::Deserialize;
use serde_json::Value;

use crate::common::config::{check_model_type, parse_config_json};
use crate::common::limits::{self, ModelSize, ParamCount, SizedConfig};
use crate::common::limits::{MAX_DIMENSION, MAX_HEADS, MAX_LAYERS};
use crate::common::{linear_config, Activation, AttentionSpec};
use crate::error::{read_config_file, ConfigError};

/// The fields of transformers' `BertConfig` that the model reads, resolved and validated;
/// `Default` is `BertConfig()`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BertConfig {
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

impl Default for BertConfig {
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

impl BertConfig {
    /// transformers' `model_type` of the family.
    pub const MODEL_TYPE: &'static str = "bert";

    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_json_str(&read_config_file(path.as_ref())?)
    }

    /// Parses and validates a `config.json` (a config naming another `model_type` is
    /// [`ConfigError::Invalid`]); unknown keys are ignored. Relative position embeddings and
    /// an encoder used as a decoder are [`ConfigError::Unsupported`].
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        let (root, mut config) = parse_config_json::<Self>(json)?;
        check_model_type(&root, Self::MODEL_TYPE)?;
        let get = |key: &str| root.get(key).filter(|v| !v.is_null());
        let unsupported = |what: String| Err(ConfigError::Unsupported(what));
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

impl SizedConfig for BertConfig {
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
        p.finish([self.vocab_size, self.hidden_size, l], None)
    }
}
