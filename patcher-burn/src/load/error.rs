//! Why a load failed.

use patcher_core::pattern::PatternError;
use patcher_core::plan::PlannedGroup;
use patcher_core::{CastError, CheckpointError, ConfigError, LoadReport, OpError, TransformError};

use super::quantize::QuantizeError;
use crate::slot::BuildError;

/// A load that did not happen. The caller's model is untouched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The model's `config.json` could not be read, is invalid, or does not fit the checkpoint
    /// (the kit's `LoadFamily::load` reads it before building the model).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The checkpoint could not be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The model could not be built with the patcher's substitutions.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Strict loading found keys and parameters that do not line up.
    #[error(
        "the checkpoint does not fit the model:\n{report}\nFix the conversions (the model's \
         defaults, the Patcher's filters and extra conversions), or load with \
         `LoadOptions::default().partial()` to keep what fits"
    )]
    Incomplete {
        /// What the plan found: unexpected, missing and mismatched keys, conversion errors.
        report: Box<LoadReport>,
    },
    /// An op failed on the tensors (after its shape check passed).
    #[error("converting `{key}`: {source}")]
    Conversion {
        /// The first target of the group.
        key: String,
        /// The op's error.
        source: OpError,
    },
    /// A tensor could not be cast to the parameter's dtype.
    #[error("casting `{key}`: {source}")]
    Cast {
        /// The checkpoint key.
        key: String,
        /// Why.
        source: CastError,
    },
    /// A tensor kind this loader cannot put in that parameter.
    #[error("`{key}`: {message}")]
    Unsupported {
        /// The parameter or key.
        key: String,
        /// What is not supported and what to do.
        message: String,
    },
    /// A parameter the load would quantize cannot be quantized with the scheme on this
    /// backend: found before any parameter is uploaded.
    #[error("cannot quantize `{key}`: {source}")]
    Quantize {
        /// The parameter's checkpoint name.
        key: String,
        /// Why, and what to choose instead.
        #[source]
        source: QuantizeError,
    },
    /// A key pattern of the load (an ignore pattern) is empty or not a valid regex.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A conversion of the load (the model's defaults, the patcher's extra conversions) is
    /// malformed: checked before anything is read.
    #[error("invalid conversion: {0}")]
    Transform(#[from] TransformError),
}

impl LoadError {
    /// Wraps an op's error with the group it failed on.
    pub(crate) fn converting(group: &PlannedGroup) -> impl FnOnce(OpError) -> Self + '_ {
        move |source| Self::Conversion { key: group.key.clone(), source }
    }
}
