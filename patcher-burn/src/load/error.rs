//! Why a load or a save failed.

use patcher_core::{CastError, CheckpointError, LoadReport, OpError, TransformError};

use crate::build::BuildError;

/// A load or save that did not happen. The caller's model is untouched.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
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
    #[error("casting `{key}` for the model: {source}")]
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
    /// A conversion used for loading cannot be reversed, so the model cannot be saved in the
    /// checkpoint's layout.
    #[error("cannot save in the checkpoint layout: {0}")]
    Transform(#[from] TransformError),
}
