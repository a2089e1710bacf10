//! `LlamaConfig`, read from a checkpoint's `config.json` with transformers 5.23's defaults.

use std::path::Path;

use serde::Deserialize;

use crate::common::config::{
    core_defaults, core_fields, deref_decoder_config, parse_config_json, RawCore,
};
use crate::common::limits::{self, decoder_params, ModelSize, SizedConfig, MAX_DIMENSION};
use crate::common::{AttentionSpec, DecoderConfig};
use crate::error::{read_config_file, ConfigError};

/// The fields of transformers' `LlamaConfig` that the model reads, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// The fields every family has (the config derefs to them: `config.hidden_size`).
    pub core: DecoderConfig,
    /// Biases on q/k/v/o.
    pub attention_bias: bool,
    /// Biases on the MLP's linears.
    pub mlp_bias: bool,
}

deref_decoder_config!(LlamaConfig);

core_defaults! { "llama": vocab_size = 32000, hidden_size = 4096, intermediate_size = 11008,
num_hidden_layers = 32, num_attention_heads = 32, num_key_value_heads = None,
max_position_embeddings = 2048 }

/// `config.json` as written, with transformers' dataclass defaults.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    #[serde(flatten)]
    core: RawCore<Defaults>,
    attention_bias: bool,
    mlp_bias: bool,
}

impl LlamaConfig {
    /// transformers' `model_type` of the family.
    pub const MODEL_TYPE: &'static str =
        <Defaults as crate::common::config::CoreDefaults>::MODEL_TYPE;

    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_json_str(&read_config_file(path.as_ref())?)
    }

    /// Parses and validates a config JSON string.
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        let (root, raw) = parse_config_json::<Raw>(json)?;
        let core = raw.core.resolve(&root)?;
        let config = Self {
            core,
            attention_bias: raw.attention_bias,
            mlp_bias: raw.mlp_bias,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values are consistent; `from_json_str` calls it, call it again after editing
    /// fields by hand.
    ///
    /// Every size and float is checked against [`limits`](crate::common::limits), so no
    /// config can make building the model abort; errors name the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.core.validate()?;
        limits::size("intermediate_size", self.intermediate_size, MAX_DIMENSION)?;
        self.model_size().map(drop)
    }

    /// Each layer's sliding window: none, Llama attends to every previous position.
    pub fn sliding_windows(&self) -> Vec<Option<usize>> {
        vec![None; self.num_hidden_layers]
    }

    /// The attention shape (the same for every layer).
    pub fn attention_spec(&self, _layer_idx: usize) -> AttentionSpec {
        self.core
            .attention_spec(self.attention_bias, self.attention_bias, None)
    }
}

impl SizedConfig for LlamaConfig {
    fn model_size(&self) -> Result<ModelSize, ConfigError> {
        let core = core_fields!(self);
        let mut p = decoder_params(&core, self.tie_word_embeddings, self.attention_bias)?;
        let (l, hidden) = (self.num_hidden_layers, ("hidden_size", self.hidden_size));
        let inter = ("intermediate_size", self.intermediate_size);
        p.add(3 * l, &[inter, hidden])?; // gate, up, down
        if self.attention_bias {
            p.add(l, &[hidden])?; // o
        }
        if self.mlp_bias {
            p.add(2 * l, &[inter])?;
            p.add(l, &[hidden])?;
        }
        p.finish(&core, None)
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
        assert!(
            matches!(bad, Err(ConfigError::Field { field, .. }) if field == "num_key_value_heads")
        );
        let bad = LlamaConfig::from_json_str(r#"{"vocab_size": "many"}"#);
        assert!(matches!(bad, Err(ConfigError::Json(_))));
        let missing = LlamaConfig::from_file("/nonexistent/config.json");
        assert!(matches!(missing, Err(ConfigError::Io { .. })));
    }
}
