//! Conversion ops: the building blocks of a [`WeightConverter`](crate::WeightConverter).
//!
//! An op takes the tensors collected for each source pattern and returns tensors keyed by
//! pattern, exactly as transformers' `ConversionOps.convert` does: a source pattern when another
//! op follows in the chain, a target pattern at the end. Ops are implemented twice over the same
//! rules: [`ConversionOp::infer`] on shapes only (the plan uses it before any byte is read) and
//! [`ConversionOp::convert`] on bytes.

use std::fmt;
use std::sync::Arc;

use crate::tensor::{HostTensor, TensorMeta};

/// Values collected per pattern, in a fixed order (declared source order, then op output order).
#[derive(Debug, Clone, PartialEq)]
pub struct Groups<T> {
    entries: Vec<(String, Vec<T>)>,
}

impl<T> Default for Groups<T> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<T> Groups<T> {
    /// An empty set of groups.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the values of one pattern (appends to the existing entry if the pattern is there).
    pub fn push(&mut self, pattern: impl Into<String>, values: Vec<T>) {
        let pattern = pattern.into();
        match self.entries.iter_mut().find(|(p, _)| *p == pattern) {
            Some((_, existing)) => existing.extend(values),
            None => self.entries.push((pattern, values)),
        }
    }

    /// Builder form of [`Groups::push`].
    pub fn with(mut self, pattern: impl Into<String>, values: Vec<T>) -> Self {
        self.push(pattern, values);
        self
    }

    /// The values collected for `pattern`.
    pub fn get(&self, pattern: &str) -> Option<&[T]> {
        self.entries
            .iter()
            .find(|(p, _)| p == pattern)
            .map(|(_, v)| v.as_slice())
    }

    /// Removes and returns the values collected for `pattern`.
    pub fn take(&mut self, pattern: &str) -> Option<Vec<T>> {
        let index = self.entries.iter().position(|(p, _)| p == pattern)?;
        Some(self.entries.remove(index).1)
    }

    /// Patterns in order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(p, _)| p.as_str())
    }

    /// `(pattern, values)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[T])> {
        self.entries.iter().map(|(p, v)| (p.as_str(), v.as_slice()))
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no pattern.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies `f` to every value, keeping patterns and order.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Groups<U> {
        Groups {
            entries: self
                .entries
                .into_iter()
                .map(|(p, v)| (p, v.into_iter().map(&mut f).collect()))
                .collect(),
        }
    }
}

impl<T> IntoIterator for Groups<T> {
    type Item = (String, Vec<T>);
    type IntoIter = std::vec::IntoIter<(String, Vec<T>)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// What an op knows about the converter it runs in, for naming outputs and for error messages.
#[derive(Debug, Clone, Copy)]
pub struct OpContext<'a> {
    /// The converter's source patterns, in declared order.
    pub source_patterns: &'a [String],
    /// The converter's target patterns, in declared order.
    pub target_patterns: &'a [String],
    /// Full name of the (first) target parameter, for messages.
    pub target_key: &'a str,
}

/// An op could not convert its inputs: names the op, the target and what was wrong (keys, shapes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} on tensors for `{target}`: {message}")]
pub struct OpError {
    /// The op, as [`ConversionOp::name`] gives it.
    pub op: String,
    /// Full name of the target the op was producing.
    pub target: String,
    /// What went wrong, with the patterns and shapes involved.
    pub message: String,
}

impl OpError {
    /// A new error for `op` while producing `ctx.target_key`.
    pub fn new(op: &dyn ConversionOp, ctx: &OpContext<'_>, message: impl Into<String>) -> Self {
        Self {
            op: op.name(),
            target: ctx.target_key.to_string(),
            message: message.into(),
        }
    }
}

/// A weight conversion step. Implement it to add your own op; the built-in ones are in this module.
///
/// `infer` and `convert` must agree: `convert(x).map(meta) == infer(x.map(meta))`.
pub trait ConversionOp: fmt::Debug + Send + Sync {
    /// Display name with arguments, e.g. `Concatenate(dim=1)`.
    fn name(&self) -> String;

    /// Whether a converter with several sources *and* several targets may use this op.
    fn supports_many_to_many(&self) -> bool {
        false
    }

    /// Output shapes and dtypes for the given inputs, with the same errors as `convert`.
    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError>;

    /// Converts the tensors.
    fn convert<'a>(
        &self,
        inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError>;

    /// The op that undoes this one (used when saving back to the checkpoint layout), if any.
    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        None
    }

    /// This op with what its reverse needs fixed from the inputs the plan saw, or `None` if the
    /// inputs change nothing. A load plan records it, so that saving undoes exactly what loading
    /// did: [`Concatenate`] without split sizes returns itself with the sizes it was given, and
    /// its reverse then splits a grouped-query fused QKV back into q, k and v of their own sizes
    /// instead of even chunks.
    fn pinned(
        &self,
        _inputs: &Groups<TensorMeta>,
        _ctx: &OpContext<'_>,
    ) -> Option<Arc<dyn ConversionOp>> {
        None
    }

    /// The op as `Any`, so an executor can recognise built-in ops and run a chain of them as a
    /// single copy (the loader gathers `MergeModulelist` + `Concatenate` straight into the
    /// parameter's buffer). `None` (the default) always takes the general path.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

mod check;
mod concat;
mod interleave;
mod layout;
mod modulelist;
mod reshape;
mod rope;
mod split;
mod transpose;

#[cfg(test)]
mod tests;

pub use concat::{Chunk, Concatenate};
pub use interleave::Interleave;
pub use modulelist::{MergeModulelist, SplitModulelist};
pub use reshape::Reshape;
pub use rope::PermuteForRope;
pub use split::Split;
pub use transpose::Transpose;
