//! `LlamaConfig`, read from a checkpoint's `config.json` with transformers 5.23's defaults.

use std::path::Path;

use serde::Deserialize;

use crate::common::config::decoder_params;
use crate::common::config::{parse_config_json, CoreDefaults, RawCore};
use crate::common::limits::{self, ModelSize, SizedConfig, MAX_DIMENSION};
use crate::common::{AttentionSpec, DecoderConfig, MlpSpec, TensorParallelConfig};
use crate::error::{read_config_file, ConfigError};
use patcher_core::plan::TensorParallel;

/// The fields of transformers' `LlamaConfig` that the model reads, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// The fields every decoder family has (`config.core.hidden_size`).
    pub core: DecoderConfig,
    /// Biases on q/k/v/o.
    pub attention_bias: bool,
    /// Biases on the MLP's linears.
    pub mlp_bias: bool,
}

/// transformers' `LlamaConfig` defaults of the fields every family has.
struct LlamaDefaults;

impl CoreDefaults for LlamaDefaults {
    const MODEL_TYPE: &'static str = "llama";
    const VOCAB_SIZE: usize = 32000;
    const HIDDEN_SIZE: usize = 4096;
    const INTERMEDIATE_SIZE: usize = 11008;
    const NUM_HIDDEN_LAYERS: usize = 32;
    const NUM_ATTENTION_HEADS: usize = 32;
    const NUM_KEY_VALUE_HEADS: Option<usize> = None;
    const MAX_POSITION_EMBEDDINGS: usize = 2048;
}

/// `config.json` as written, with transformers' dataclass defaults.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    #[serde(flatten)]
    core: RawCore<LlamaDefaults>,
    attention_bias: bool,
    mlp_bias: bool,
}

impl LlamaConfig {
    /// transformers' `model_type` of the family.
    pub const MODEL_TYPE: &'static str = LlamaDefaults::MODEL_TYPE;

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
        limits::size(
            "intermediate_size",
            self.core.intermediate_size,
            MAX_DIMENSION,
        )?;
        self.model_size().map(drop)
    }

    /// The attention shape (the same for every layer).
    pub fn attention_spec(&self, _layer_idx: usize) -> AttentionSpec {
        self.core
            .attention_spec(self.attention_bias, self.attention_bias, None)
    }

    /// The MLP's shape (the same for every layer).
    pub fn mlp_spec(&self) -> MlpSpec {
        (self.core).mlp_spec(self.core.intermediate_size, self.mlp_bias)
    }
}

impl TensorParallelConfig for LlamaConfig {
    fn tensor_parallel(
        &self,
        rank: usize,
        world: usize,
    ) -> Result<(Self, TensorParallel), ConfigError> {
        // A rowwise projection's bias would be added by every peer before the sum.
        for (field, biased) in [
            ("attention_bias", self.attention_bias),
            ("mlp_bias", self.mlp_bias),
        ] {
            if biased {
                return Err(ConfigError::Field {
                    field: field.into(),
                    value: "true".into(),
                    reason: "tensor parallelism does not support biased rowwise projections \
                             (o_proj, down_proj) yet: each peer would add the bias once; load \
                             this model on one device"
                        .into(),
                });
            }
        }
        let (core, plan) = self.core.tensor_parallel(rank, world)?;
        Ok((Self { core, ..self.clone() }, plan))
    }
}

impl SizedConfig for LlamaConfig {
    fn model_size(&self) -> Result<ModelSize, ConfigError> {
        let core = self.core.fields();
        let mut p = decoder_params(&core, self.core.tie_word_embeddings, self.attention_bias)?;
        let (l, hidden) = (
            self.core.num_hidden_layers,
            ("hidden_size", self.core.hidden_size),
        );
        let inter = ("intermediate_size", self.core.intermediate_size);
        p.add(3 * l, &[inter, hidden])?; // gate, up, down
        if self.attention_bias {
            p.add(l, &[hidden])?; // o
        }
        if self.mlp_bias {
            p.add(2 * l, &[inter])?;
            p.add(l, &[hidden])?;
        }
        p.finish(core.sizes(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_transformers() {
        let c = LlamaConfig::from_json_str("{}").unwrap();
        assert_eq!(
            (
                c.core.vocab_size,
                c.core.hidden_size,
                c.core.num_hidden_layers
            ),
            (32000, 4096, 32)
        );
        assert_eq!((c.core.num_key_value_heads, c.core.head_dim), (32, 128));
        assert!(!c.attention_bias && !c.mlp_bias && !c.core.tie_word_embeddings);
        let c = LlamaConfig::from_json_str(r#"{"head_dim": 24, "num_key_value_heads": 8}"#);
        assert_eq!(c.unwrap().core.head_dim, 24);
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
