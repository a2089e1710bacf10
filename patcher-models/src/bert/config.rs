//! `BertConfig`, read from a checkpoint's `config.json` with transformers 5.23's defaults.

use std::path::Path;

use crate::common::limits::{ModelSize, SizedConfig};
use crate::common::EncoderConfig;
use crate::error::{read_config_file, ConfigError};

/// transformers' `BertConfig`: the [`EncoderConfig`] fields (it derefs to them); `Default` is
/// `BertConfig()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BertConfig(pub EncoderConfig);

impl BertConfig {
    /// transformers' `model_type` of the family.
    pub const MODEL_TYPE: &'static str = "bert";

    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_json_str(&read_config_file(path.as_ref())?)
    }

    /// Parses and validates a config JSON string (see [`EncoderConfig::from_json_str`]).
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        EncoderConfig::from_json_str(json, Self::MODEL_TYPE).map(Self)
    }
}

impl std::ops::Deref for BertConfig {
    type Target = EncoderConfig;

    fn deref(&self) -> &EncoderConfig {
        &self.0
    }
}

impl std::ops::DerefMut for BertConfig {
    fn deref_mut(&mut self) -> &mut EncoderConfig {
        &mut self.0
    }
}

impl SizedConfig for BertConfig {
    fn model_size(&self) -> Result<ModelSize, ConfigError> {
        self.0.model_size()
    }
}
