//! # patcher-core
//!
//! The backend-independent half of burn-patcher: the checkpoint reader, the key-pattern engine,
//! weight renamings and converters with their ops, the [`Patcher`] and the conversion plan.

#![warn(missing_docs)]

mod cast;
mod checkpoint;
pub mod ops;
mod patcher;
pub mod pattern;
pub mod plan;
mod tensor;
mod transform;

pub use cast::CastError;
pub use checkpoint::{save_safetensors, write_atomic, Checkpoint, CheckpointError, TensorRef};
pub use ops::{ConversionOp, Groups, OpContext, OpError};
pub use patcher::{ClassReplacement, Patcher, PatcherError, UnmatchedClassKey};
pub use plan::{ConversionPlan, LoadReport, PlanOptions};
pub use tensor::{DType, HostTensor, TensorMeta};
pub use transform::{
    GroupWeightRename, PrefixChange, TransformError, WeightConverter, WeightRenaming,
    WeightTransform,
};
