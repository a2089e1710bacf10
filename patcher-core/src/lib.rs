//! # patcher-core
//!
//! The backend-independent half of burn-patcher: the checkpoint reader, the key-pattern engine,
//! weight renamings and converters with their ops, the weight half of a patcher ([`WeightPatch`])
//! and the conversion plan. The `Patcher` itself, with its class mapping, is `patcher-burn`'s:
//! class mappings are typed by the slots they fill.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cast;
mod checkpoint;
mod config_error;
pub mod ops;
mod patch;
pub mod pattern;
pub mod plan;
mod tensor;
mod transform;

pub use cast::{CastError, LossyNarrowing};
pub use checkpoint::{
    save_checkpoint, save_safetensors, shard_by_size, write_atomic, Checkpoint, CheckpointError,
    TensorRef,
};
pub use config_error::ConfigError;
pub use ops::{ConversionOp, Groups, OpContext, OpError};
pub use patch::{PatcherError, PatcherErrors, UnmatchedKey, WeightPatch};
pub use plan::{ConversionPlan, LoadReport, PlanOptions};
pub use tensor::{DType, HostTensor, TensorMeta};
pub use transform::{
    GroupWeightRename, PrefixChange, TransformError, WeightConverter, WeightRenaming,
    WeightTransform,
};

/// The README's examples, run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
