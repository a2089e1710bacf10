//! Input checks and output-key rules shared by the ops, on shapes only, so that `infer` and
//! `convert` run the very same validation.

use std::fmt::Write;

use super::{ConversionOp, Groups, OpContext, OpError};
use crate::tensor::{DType, HostTensor, TensorMeta};

/// The metadata of every input tensor, keeping patterns and order.
pub(crate) fn metas(inputs: &Groups<HostTensor<'_>>) -> Groups<TensorMeta> {
    let mut out = Groups::new();
    for (pattern, tensors) in inputs.iter() {
        out.push(pattern, tensors.iter().map(HostTensor::meta).collect());
    }
    out
}

/// `[`a`, `b`]` for messages.
pub(crate) fn list<'s>(items: impl IntoIterator<Item = &'s str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        let _ = write!(out, "{}`{item}`", if i == 0 { "" } else { ", " });
    }
    out.push(']');
    out
}

/// `pattern` [shapes] for every input, for messages.
pub(crate) fn describe(inputs: &Groups<TensorMeta>) -> String {
    let mut out = String::new();
    for (i, (pattern, tensors)) in inputs.iter().enumerate() {
        let shapes: Vec<_> = tensors.iter().map(|t| format!("{:?}", t.shape)).collect();
        let _ = write!(
            out,
            "{}`{pattern}`: {}",
            if i == 0 { "" } else { "; " },
            shapes.join(", ")
        );
    }
    out
}

/// The one dtype all inputs share (`None` without inputs); mixed dtypes are an error because
/// the loader casts every source to one dtype before the ops run.
pub(crate) fn common_dtype(
    op: &dyn ConversionOp,
    ctx: &OpContext<'_>,
    inputs: &Groups<TensorMeta>,
) -> Result<Option<DType>, OpError> {
    let mut found: Option<(DType, &str)> = None;
    for (pattern, tensors) in inputs.iter() {
        for t in tensors {
            match found {
                None => found = Some((t.dtype, pattern)),
                Some((dtype, first)) if dtype != t.dtype => {
                    return Err(OpError::new(
                        op,
                        ctx,
                        format!(
                            "inputs have mixed dtypes ({dtype} for `{first}`, {} for \
                             `{pattern}`); cast every source to one dtype before the ops",
                            t.dtype
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(found.map(|(dtype, _)| dtype))
}

/// Checks that `dim` indexes `shape` (`inclusive` allows `dim == rank`, for stacking).
pub(crate) fn check_dim(
    op: &dyn ConversionOp,
    ctx: &OpContext<'_>,
    pattern: &str,
    shape: &[usize],
    dim: usize,
    inclusive: bool,
) -> Result<(), OpError> {
    let rank = shape.len();
    if dim < rank || (inclusive && dim == rank) {
        return Ok(());
    }
    Err(OpError::new(
        op,
        ctx,
        format!(
            "dim {dim} is out of range for the {rank}-d tensor of `{pattern}` with shape \
             {shape:?}; use a dim below {}",
            if inclusive { rank + 1 } else { rank }
        ),
    ))
}

/// For ops that transform exactly one tensor (Transpose, Interleave, Reshape): the input's
/// pattern and tensor, and the output key as transformers' `Transpose` picks it: the only
/// target, or the only source when several targets follow (an op earlier in a chain).
pub(crate) fn single_tensor<'g>(
    op: &dyn ConversionOp,
    ctx: &OpContext<'_>,
    inputs: &'g Groups<TensorMeta>,
) -> Result<(&'g str, &'g TensorMeta, String), OpError> {
    let mut entries = inputs.iter();
    let (pattern, tensors) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        _ => {
            return Err(OpError::new(
                op,
                ctx,
                format!(
                    "expects the tensor of exactly one pattern, got {}; merge them first (e.g. \
                     with Concatenate) or apply it after they are split",
                    list(inputs.patterns())
                ),
            ))
        }
    };
    let [tensor] = tensors else {
        return Err(OpError::new(
            op,
            ctx,
            format!(
                "expects one tensor for `{pattern}`, got {}; stack them first with \
                 MergeModulelist",
                tensors.len()
            ),
        ));
    };
    let key = match (ctx.source_patterns, ctx.target_patterns) {
        (_, [target]) => target.clone(),
        ([source], targets) if targets.len() > 1 => source.clone(),
        (sources, targets) => {
            return Err(OpError::new(
                op,
                ctx,
                format!(
                    "cannot name its output with source patterns {} and target patterns {}; it \
                     needs one target, or one source followed by an op that splits into the \
                     targets",
                    list(sources.iter().map(String::as_str)),
                    list(targets.iter().map(String::as_str))
                ),
            ))
        }
    };
    Ok((pattern, tensor, key))
}

/// Takes the one tensor of `pattern` out of `inputs`; the plan has checked it is there, so a
/// failure is an internal error, reported rather than panicking.
pub(crate) fn take_one<'a>(
    op: &dyn ConversionOp,
    ctx: &OpContext<'_>,
    inputs: &mut Groups<HostTensor<'a>>,
    pattern: &str,
) -> Result<HostTensor<'a>, OpError> {
    inputs
        .take(pattern)
        .and_then(|tensors| tensors.into_iter().next())
        .ok_or_else(|| {
            OpError::new(
                op,
                ctx,
                format!("no tensor left for `{pattern}` (internal)"),
            )
        })
}
