//! Op tests: hand-computed values, reverse round trips in F32/F16/BF16, and error messages.
//! `run` checks on every call that `infer` agrees with `convert`.

mod concat;
mod modulelist;
mod permute;
mod reshape;
mod round_trip;
mod split;

use std::sync::Arc;

use super::check::metas;
use super::{ConversionOp, Groups, OpContext, OpError};
use crate::tensor::{DType, HostTensor};

/// A converter's source and target patterns.
pub(super) struct Patterns {
    sources: Vec<String>,
    targets: Vec<String>,
}

impl Patterns {
    pub(super) fn new(sources: &[&str], targets: &[&str]) -> Self {
        Self {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub(super) fn ctx(&self) -> OpContext<'_> {
        OpContext {
            source_patterns: &self.sources,
            target_patterns: &self.targets,
            target_key: "model.target",
        }
    }

    /// The patterns of the reversed converter.
    pub(super) fn reversed(&self) -> Self {
        Self { sources: self.targets.clone(), targets: self.sources.clone() }
    }
}

pub(super) fn f32t(shape: &[usize], values: &[f32]) -> HostTensor<'static> {
    HostTensor::from_f32(shape, values)
}

/// Runs `op`, checking that `infer` gives the metadata (or the error) `convert` gives.
pub(super) fn run<'a>(
    op: &dyn ConversionOp,
    inputs: Groups<HostTensor<'a>>,
    p: &Patterns,
) -> Result<Groups<HostTensor<'a>>, OpError> {
    let inferred = op.infer(metas(&inputs), &p.ctx());
    let converted = op.convert(inputs, &p.ctx());
    match (&inferred, &converted) {
        (Ok(i), Ok(c)) => assert_eq!(i, &metas(c), "{}: infer and convert disagree", op.name()),
        (Err(i), Err(c)) => assert_eq!(i, c, "{}: different errors", op.name()),
        _ => panic!(
            "{}: infer gave {inferred:?} but convert gave {:?}",
            op.name(),
            converted.as_ref().map(metas)
        ),
    }
    converted
}

/// Runs ops in sequence.
pub(super) fn run_chain<'a>(
    ops: &[Arc<dyn ConversionOp>],
    mut values: Groups<HostTensor<'a>>,
    p: &Patterns,
) -> Groups<HostTensor<'a>> {
    for op in ops {
        values = run(op.as_ref(), values, p).unwrap();
    }
    values
}

/// The reverse chain: reversed order, each op reversed.
pub(super) fn reversed(ops: &[Arc<dyn ConversionOp>]) -> Vec<Arc<dyn ConversionOp>> {
    ops.iter().rev().map(|op| op.reverse().unwrap()).collect()
}

/// `(key, shape, values as f32)` for every output, in order.
pub(super) fn flat(out: &Groups<HostTensor<'_>>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    out.iter()
        .flat_map(|(key, tensors)| {
            tensors
                .iter()
                .map(move |t| (key.to_string(), t.shape.clone(), t.to_f32_vec().unwrap()))
        })
        .collect()
}

/// One `(key, shape, values)` row for expectations.
pub(super) fn row(key: &str, shape: &[usize], values: &[f32]) -> (String, Vec<usize>, Vec<f32>) {
    (key.to_string(), shape.to_vec(), values.to_vec())
}

/// The error message of running `op`.
pub(super) fn error(op: &dyn ConversionOp, inputs: Groups<HostTensor<'_>>, p: &Patterns) -> String {
    run(op, inputs, p).unwrap_err().to_string()
}

/// Casts every tensor to `dtype`.
pub(super) fn cast_all(
    groups: &Groups<HostTensor<'static>>,
    dtype: DType,
) -> Groups<HostTensor<'static>> {
    groups.clone().map(|t| t.cast(dtype).unwrap())
}

/// Forward then reverse gives `expected_back` (the inputs when `None`), in F32, F16 and BF16.
pub(super) fn assert_round_trip(
    ops: &[Arc<dyn ConversionOp>],
    inputs: Groups<HostTensor<'static>>,
    p: &Patterns,
    expected_back: Option<Groups<HostTensor<'static>>>,
) {
    let expected_back = expected_back.unwrap_or_else(|| inputs.clone());
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let forward = run_chain(ops, cast_all(&inputs, dtype), p);
        let back = run_chain(&reversed(ops), forward, &p.reversed());
        assert_eq!(
            back,
            cast_all(&expected_back, dtype),
            "round trip through {:?} in {dtype}",
            ops.iter().map(|op| op.name()).collect::<Vec<_>>()
        );
    }
}
