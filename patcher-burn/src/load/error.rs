//! Why a load or a save failed.

use patcher_core::pattern::PatternError;
use patcher_core::plan::PlannedGroup;
use patcher_core::{CastError, CheckpointError, LoadReport, OpError, TransformError};

use super::quantize::QuantizeError;
use crate::slot::BuildError;

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
    /// A tensor could not be cast: to the parameter's dtype on a load, to
    /// [`SaveOptions::float_dtype`](crate::SaveOptions::float_dtype) on a save (which refuses
    /// lossy narrowing unless [`SaveOptions::allow_lossy_narrowing`](crate::SaveOptions::allow_lossy_narrowing)).
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
    /// The file a save would write does not load back into the same model, bit for bit, through
    /// the same conversions, in the layout that was loaded. Nothing was written.
    #[error(
        "refusing to save: {message}{}{}\nThe file would not load back into this model as it \
         is; fix the conversion (for a fused QKV under grouped-query attention give \
         `Concatenate::with_split_sizes`; anchor and escape renaming patterns so that a pattern \
         does not match its own output)",
        conversion.as_ref().map(|c| format!("\n  conversion: {c}")).unwrap_or_default(),
        keys_line(keys)
    )]
    SaveMismatch {
        /// What does not line up.
        message: String,
        /// The conversion at fault, if one is.
        conversion: Option<String>,
        /// The keys concerned (at most a few are shown in the message).
        keys: Vec<String>,
    },
    /// A conversion used for loading cannot be reversed, so the model cannot be saved in the
    /// checkpoint's layout.
    #[error("cannot save in the checkpoint layout: {0}")]
    Transform(#[from] TransformError),
}

impl LoadError {
    /// Wraps an op's error with the group it failed on (loading or saving).
    pub(crate) fn converting(group: &PlannedGroup) -> impl FnOnce(OpError) -> Self + '_ {
        move |source| Self::Conversion {
            key: group.key.clone(),
            source,
        }
    }
}

/// `"\n  keys: a, b, c and N more"`, or nothing.
fn keys_line(keys: &[String]) -> String {
    const SHOWN: usize = 5;
    if keys.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = keys.iter().take(SHOWN).map(String::as_str).collect();
    let more = keys.len().saturating_sub(SHOWN);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("\n  keys: {}{tail}", shown.join(", "))
}
