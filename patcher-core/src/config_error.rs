//! The typed error of reading and validating a model's `config.json`, shared by every family
//! (the model kit's and a user's).

use std::path::PathBuf;

/// Why a model config could not be read or is not supported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
        /// that sizes most of the parameters).
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
    /// The config cannot be split across the peers of a tensor-parallel model (see
    /// [`TensorParallel`](crate::plan::TensorParallel)).
    #[error("cannot split the model across peers: {0}")]
    TensorParallel(#[from] crate::plan::ShardError),
    /// A patch (the model kit's `Patch`) replaces a class the family does not have.
    #[error(
        "the patch `{patch}` does not apply to {model_type} models, which lack a class it \
         replaces; {model_type} takes: {supported}"
    )]
    UnsupportedPatch {
        /// The patch asked for, by its name (`fused-qkv+sequential-experts`).
        patch: String,
        /// The family's `model_type`.
        model_type: String,
        /// Every replacement the family takes, by name.
        supported: String,
    },
    /// A valid transformers config that this crate does not implement (e.g. a RoPE type).
    #[error("unsupported config: {0}")]
    Unsupported(String),
}
