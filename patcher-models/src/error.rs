//! The typed error of config parsing and validation.

use std::path::PathBuf;

/// Why a model config could not be read or is not supported.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JSON is malformed or a field has the wrong type.
    #[error("invalid config JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The values are inconsistent (e.g. heads not divisible by KV heads).
    #[error("invalid config: {0}")]
    Invalid(String),
    /// A valid transformers config that this crate does not implement (e.g. a RoPE type).
    #[error("unsupported config: {0}")]
    Unsupported(String),
}

/// Reads a file to a string, with the path in the error.
pub(crate) fn read_config_file(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}
