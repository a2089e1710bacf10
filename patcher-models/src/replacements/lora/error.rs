//! Why a LoRA save, or the load of a PEFT adapter, failed.

use std::path::PathBuf;

/// A LoRA adapter, base or merged save, or an adapter load, that did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeftAdapterError {
    /// Loading the adapter's tensors failed (the model was not changed).
    #[error(transparent)]
    Load(#[from] patcher_burn::LoadError),
    /// Saving the tensors failed (nothing was written for that file).
    #[error(transparent)]
    Save(#[from] patcher_burn::SaveError),
    /// The adapter file does not fit the model's adapters.
    #[error(
        "the PEFT adapter does not fit the model's LoRA layers:\n{report}\nPatch the model with \
         `lora_patcher` over the adapter's `target_modules`, with its rank `r`"
    )]
    Mismatch {
        /// What did not line up (base parameters, which an adapter does not hold, left out).
        report: Box<patcher_core::LoadReport>,
    },
    /// An adapter config this kit's `LoraLinear` cannot compute as PEFT would.
    #[error("{path}: {message}")]
    UnsupportedConfig {
        /// The config file.
        path: PathBuf,
        /// What is not supported, and what to do.
        message: String,
    },
    /// The model holds no LoRA adapter (`*.lora_a.weight`).
    #[error(
        "the model has no LoRA adapter (no `*.lora_a.weight` parameter); patch it with \
         `lora_patcher` before saving an adapter"
    )]
    NoAdapter,
    /// Adapters of several ranks: PEFT's config would need a `rank_pattern`, not written.
    #[error(
        "the model's LoRA adapters have several ranks {ranks:?}; adapter_config.json holds one \
         `r`: give every adapted layer the same rank"
    )]
    MixedRanks {
        /// The ranks found.
        ranks: Vec<usize>,
    },
    /// A file or folder could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
