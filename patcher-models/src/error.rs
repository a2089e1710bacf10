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

/// Why `from_pretrained` failed: the config, or the build and load.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    /// `config.json` could not be read or is not supported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The model could not be built or the checkpoint loaded (the error carries the load
    /// report when keys do not line up).
    #[error(transparent)]
    Load(#[from] patcher_burn::LoadError),
}

/// `config.json` of the checkpoint at `path` (a folder, or a weights file inside one).
pub(crate) fn config_path(path: &std::path::Path) -> std::path::PathBuf {
    if path.is_dir() {
        path.join("config.json")
    } else {
        path.parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join("config.json")
    }
}
