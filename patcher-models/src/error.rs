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
    /// A field's value is out of range (zero, negative, not finite, larger than any model this
    /// crate builds) or inconsistent with another field. Checked before anything is allocated.
    #[error("invalid config: `{field}` = {value}: {reason}")]
    Field {
        /// The field, as `config.json` names it (`rope_parameters.factor` for a nested one).
        field: String,
        /// Its value, as read.
        value: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The config describes a model larger than the checkpoint it is loaded with (checked on
    /// the checkpoint's header, before the model is built, so nothing of that size is
    /// allocated).
    #[error(
        "config field `{field}` = {config} does not fit the checkpoint, which has {checkpoint}; \
         use the config.json that came with these weights"
    )]
    CheckpointMismatch {
        /// The field (for a parameter count larger than the checkpoint's elements: the field
        /// that sizes most of the parameters, see [`ModelSize::largest_field`](crate::common::limits::ModelSize::largest_field)).
        field: String,
        /// The config's value.
        config: String,
        /// What the checkpoint holds instead.
        checkpoint: String,
    },
    /// The config file is not a regular file, or larger than any config.
    #[error("cannot read config {path}: {reason}")]
    NotAConfig {
        /// The file.
        path: PathBuf,
        /// What it is.
        reason: String,
    },
    /// A [`Patch`](crate::replacements::Patch) replaces a class the family does not have.
    #[error(
        "the patch `{patch}` does not apply to {model_type} models, which lack a class it \
         replaces; {model_type} takes: {supported}"
    )]
    UnsupportedPatch {
        /// The patch asked for.
        patch: crate::replacements::Patch,
        /// The family's `model_type`.
        model_type: &'static str,
        /// Every replacement the family takes.
        supported: crate::replacements::Patch,
    },
    /// A valid transformers config that this crate does not implement (e.g. a RoPE type).
    #[error("unsupported config: {0}")]
    Unsupported(String),
}

/// The largest `config.json` read (16 MiB; real ones are a few KB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a file to a string, with the path in the error. The file must be a regular file (a
/// FIFO would block) of at most [`MAX_CONFIG_BYTES`].
pub(crate) fn read_config_file(path: &std::path::Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ConfigError::NotAConfig {
            path: path.to_path_buf(),
            reason: "not a regular file (a folder, FIFO or device); config.json must be a file"
                .into(),
        });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::NotAConfig {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes, more than the {MAX_CONFIG_BYTES} bytes a config may have",
                meta.len()
            ),
        });
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_BYTES).read_to_string(&mut text))
        .map_err(io)?;
    Ok(text)
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
