//! # patcher-core
//!
//! The backend-independent half of burn-patcher: the checkpoint reader, the key-pattern engine,
//! weight renamings and converters with their ops, the [`Patcher`] and the conversion plan.

#![warn(missing_docs)]

pub mod ops;
mod patcher;
mod tensor;

pub use patcher::ClassReplacement;
pub use ops::{ConversionOp, Groups, OpContext, OpError};
pub use tensor::{DType, HostTensor, TensorMeta};
