//! `LlamaConfig`, read from a checkpoint's `config.json` with transformers 5.23's defaults.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::common::{Activation, AttentionSpec, RopeParameters};
use crate::error::{read_config_file, ConfigError};

/// The fields of transformers' `LlamaConfig` that the model reads, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (`num_attention_heads` when the config has none).
    pub num_key_value_heads: usize,
    /// Head width (`head_dim`, else `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// `hidden_act`.
    pub hidden_act: Activation,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// Std of the normal weight init.
    pub initializer_range: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Whether `lm_head` shares `embed_tokens.weight`.
    pub tie_word_embeddings: bool,
    /// RoPE parameters.
    pub rope: RopeParameters,
    /// Biases on q/k/v/o.
    pub attention_bias: bool,
    /// Biases on the MLP's linears.
    pub mlp_bias: bool,
}

/// `config.json` as written, with transformers' dataclass defaults.
#[derive(Deserialize)]
#[serde(default)]
struct Raw {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_act: String,
    max_position_embeddings: usize,
    initializer_range: f64,
    rms_norm_eps: f64,
    tie_word_embeddings: bool,
    attention_bias: bool,
    mlp_bias: bool,
}

impl Default for Raw {
    fn default() -> Self {
        Self {
            model_type: None,
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            hidden_act: "silu".into(),
            max_position_embeddings: 2048,
            initializer_range: 0.02,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
        }
    }
}

impl LlamaConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_json_str(&read_config_file(path.as_ref())?)
    }

    /// Parses and validates a config JSON string.
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(json)?;
        let Value::Object(root) = &value else {
            return Err(ConfigError::Invalid(
                "config.json is not a JSON object".into(),
            ));
        };
        let raw: Raw = serde_json::from_value(value.clone())?;
        if let Some(model_type) = raw.model_type.as_deref() {
            if model_type != "llama" {
                return Err(ConfigError::Invalid(format!(
                    "model_type is `{model_type}`, expected `llama`"
                )));
            }
        }
        if raw.num_attention_heads == 0 || raw.hidden_size == 0 {
            return Err(ConfigError::Invalid(
                "hidden_size and num_attention_heads must be positive".into(),
            ));
        }
        let config = Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads),
            hidden_act: Activation::from_name(&raw.hidden_act)?,
            max_position_embeddings: raw.max_position_embeddings,
            initializer_range: raw.initializer_range,
            rms_norm_eps: raw.rms_norm_eps,
            tie_word_embeddings: raw.tie_word_embeddings,
            rope: RopeParameters::from_config_json(root, raw.max_position_embeddings)?,
            attention_bias: raw.attention_bias,
            mlp_bias: raw.mlp_bias,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values are consistent; `from_json_str` calls it, call it again after editing
    /// fields by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.num_key_value_heads == 0 || self.num_attention_heads % self.num_key_value_heads != 0
        {
            return Err(ConfigError::Invalid(format!(
                "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return Err(ConfigError::Invalid(format!(
                "head_dim ({}) must be even and positive",
                self.head_dim
            )));
        }
        Ok(())
    }

    /// The attention shape (the same for every layer).
    pub fn attention_spec(&self, _layer_idx: usize) -> AttentionSpec {
        AttentionSpec {
            hidden_size: self.hidden_size,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            qkv_bias: self.attention_bias,
            o_bias: self.attention_bias,
            initializer_range: self.initializer_range,
            sliding_window: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_transformers() {
        let c = LlamaConfig::from_json_str("{}").unwrap();
        assert_eq!(
            (c.vocab_size, c.hidden_size, c.num_hidden_layers),
            (32000, 4096, 32)
        );
        assert_eq!((c.num_key_value_heads, c.head_dim), (32, 128));
        assert!(!c.attention_bias && !c.mlp_bias && !c.tie_word_embeddings);
        let c = LlamaConfig::from_json_str(r#"{"head_dim": 24, "num_key_value_heads": 8}"#);
        assert_eq!(c.unwrap().head_dim, 24);
    }

    #[test]
    fn typed_errors() {
        let bad = LlamaConfig::from_json_str(r#"{"num_key_value_heads": 5}"#);
        assert!(matches!(bad, Err(ConfigError::Invalid(_))));
        let bad = LlamaConfig::from_json_str(r#"{"vocab_size": "many"}"#);
        assert!(matches!(bad, Err(ConfigError::Json(_))));
        let missing = LlamaConfig::from_file("/nonexistent/config.json");
        assert!(matches!(missing, Err(ConfigError::Io { .. })));
    }
}
