//! Why a save failed.

use patcher_core::pattern::PatternError;
use patcher_core::plan::PlannedGroup;
use patcher_core::{CastError, CheckpointError, OpError, TransformError};

/// A save that did not happen. Nothing was written: an existing checkpoint at the target is
/// left whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    /// Writing the files failed (out of disk, permissions, another save into the same folder:
    /// [`CheckpointError::FolderBusy`]); the commit did not happen.
    #[error(transparent)]
    Write(#[from] CheckpointError),
    /// The file would not load back into this model as it is, bit for bit, through the same
    /// conversions, in the layout that was loaded.
    #[error(
        "refusing to save: {message}{}{}\nThe file would not load back into this model as it \
         is; fix the conversion (for a fused QKV under grouped-query attention give \
         `Concatenate::with_split_sizes`; anchor and escape renaming patterns so that a pattern \
         does not match its own output)",
        conversion.as_ref().map(|c| format!("\n  conversion: {c}")).unwrap_or_default(),
        keys_line(keys)
    )]
    Mismatch {
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
    /// A reversed op failed on the tensors.
    #[error("converting `{key}`: {source}")]
    Conversion {
        /// The first target of the group.
        key: String,
        /// The op's error.
        source: OpError,
    },
    /// A tensor could not be cast to
    /// [`SaveOptions::float_dtype`](crate::SaveOptions::float_dtype), which refuses lossy
    /// narrowing unless
    /// [`SaveOptions::allow_lossy_narrowing`](crate::SaveOptions::allow_lossy_narrowing).
    #[error("casting `{key}`: {source}")]
    Cast {
        /// The checkpoint key.
        key: String,
        /// Why.
        source: CastError,
    },
    /// A parameter or option this save cannot write (a quantized parameter, a dtype that is not
    /// a float for `float_dtype`).
    #[error("`{key}`: {message}")]
    Unsupported {
        /// The parameter, key or option.
        key: String,
        /// What is not supported and what to do.
        message: String,
    },
    /// The model is one peer's part of a tensor-parallel load
    /// ([`LoadOptions::tensor_parallel`](crate::LoadOptions::tensor_parallel)): its split
    /// parameters are slices, and a checkpoint of slices would load into nothing.
    #[error(
        "the model holds peer {rank}'s slices of a model split across {world} peers; saving one \
         peer would write a checkpoint of slices: load the model without tensor_parallel to save it"
    )]
    TensorParallel {
        /// This peer.
        rank: usize,
        /// How many peers share the model.
        world: usize,
    },
    /// A pattern of [`SaveOptions::only_params`](crate::SaveOptions::only_params) or
    /// [`SaveOptions::skip_params`](crate::SaveOptions::skip_params) is empty or not a valid
    /// regex.
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

impl SaveError {
    /// Wraps a reversed op's error with the group it failed on.
    pub(crate) fn converting(group: &PlannedGroup) -> impl FnOnce(OpError) -> Self + '_ {
        move |source| Self::Conversion { key: group.key.clone(), source }
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
