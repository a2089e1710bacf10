//! `MergeModulelist` (`torch.stack` of a module list) and its reverse `SplitModulelist`.

use std::borrow::Cow;
use std::sync::Arc;

use super::check::{check_dim, common_dtype, list, metas, take_one};
use super::layout::{concat, slice_mid, Split3};
use super::{ConversionOp, Groups, OpContext, OpError};
use crate::tensor::{HostTensor, TensorMeta};

/// Stacks the tensors collected for each pattern (e.g. every expert's `w1`) along a new `dim`.
///
/// Output keys follow transformers: with one input pattern the output is the (single) target;
/// with several, each stack keeps its source pattern so that a following
/// [`Concatenate`](crate::ops::Concatenate)
/// can fuse them. Reverse: [`SplitModulelist`].
///
/// ```
/// use patcher_core::ops::{ConversionOp, Groups, MergeModulelist, OpContext};
/// use patcher_core::HostTensor;
///
/// let sources = ["experts.*.w1.weight".to_string()];
/// let targets = ["experts.gate".to_string()];
/// let ctx = OpContext { source_patterns: &sources, target_patterns: &targets, target_key: "experts.gate" };
/// let experts = vec![
///     HostTensor::from_f32([2], &[1.0, 2.0]),
///     HostTensor::from_f32([2], &[3.0, 4.0]),
/// ];
/// let out = MergeModulelist::new(0).convert(Groups::new().with(&sources[0], experts), &ctx)?;
/// let stacked = &out.get("experts.gate").unwrap()[0];
/// assert_eq!(stacked.shape, vec![2, 2]);
/// assert_eq!(stacked.to_f32_vec()?, vec![1.0, 2.0, 3.0, 4.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeModulelist {
    dim: usize,
}

impl MergeModulelist {
    /// Stacking along a new dimension at `dim`.
    pub fn new(dim: usize) -> Self {
        Self { dim }
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `(input pattern, output key, stacked metadata)` per input pattern.
    fn plan(
        &self,
        inputs: &Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Vec<(String, String, TensorMeta)>, OpError> {
        common_dtype(self, ctx, inputs)?;
        let single = inputs.len() == 1;
        let mut out = Vec::with_capacity(inputs.len());
        for (pattern, tensors) in inputs.iter() {
            let key = match (single, ctx.target_patterns) {
                (true, [target]) => target.clone(),
                (true, targets) => {
                    return Err(OpError::new(
                        self,
                        ctx,
                        format!(
                            "one input pattern (`{pattern}`) stacks into one tensor, but the \
                             converter has target patterns {}; give it one target",
                            list(targets.iter().map(String::as_str))
                        ),
                    ))
                }
                (false, _) => pattern.to_string(),
            };
            let Some(first) = tensors.first() else {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!("no tensors to stack for `{pattern}`"),
                ));
            };
            check_dim(self, ctx, pattern, &first.shape, self.dim, true)?;
            if let Some((i, t)) = tensors
                .iter()
                .enumerate()
                .find(|(_, t)| t.shape != first.shape)
            {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!(
                        "tensor {i} of `{pattern}` has shape {:?} but tensor 0 has {:?}; every \
                         tensor of a stacked module list must have the same shape",
                        t.shape, first.shape
                    ),
                ));
            }
            let mut shape = first.shape.clone();
            shape.insert(self.dim, tensors.len());
            out.push((
                pattern.to_string(),
                key,
                TensorMeta::new(first.dtype, shape),
            ));
        }
        Ok(out)
    }
}

impl ConversionOp for MergeModulelist {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn name(&self) -> String {
        format!("MergeModulelist(dim={})", self.dim)
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        let mut out = Groups::new();
        for (_, key, meta) in self.plan(&inputs, ctx)? {
            out.push(key, vec![meta]);
        }
        Ok(out)
    }

    fn convert<'a>(
        &self,
        mut inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        let plan = self.plan(&metas(&inputs), ctx)?;
        let mut out = Groups::new();
        for (pattern, key, meta) in plan {
            let mut tensors = inputs.take(&pattern).unwrap_or_default();
            let bytes = if tensors.len() == 1 {
                // A stack of one is a reshape: keep the bytes (and the borrow).
                tensors.pop().map(|t| t.bytes).unwrap_or(Cow::Borrowed(&[]))
            } else {
                let elem = meta.dtype.size_in_bytes();
                let views: Vec<(&[u8], Split3)> = tensors
                    .iter()
                    .map(|t| (t.bytes.as_ref(), Split3::inserted(&t.shape, self.dim, elem)))
                    .collect();
                Cow::Owned(concat(&views))
            };
            out.push(key, vec![HostTensor::new(meta.dtype, meta.shape, bytes)]);
        }
        Ok(out)
    }

    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        Some(Arc::new(SplitModulelist::new(self.dim)))
    }
}

/// Splits each input tensor along `dim` into its `size(dim)` slices and removes that dimension
/// (e.g. a `[experts, out, in]` tensor into one `[out, in]` tensor per expert).
///
/// Output keys replace `*` by the slice index: in the single target pattern when there is one
/// input pattern, in each input's (source) pattern when there are several (the end of a chain
/// after [`Chunk`](crate::ops::Chunk)). Unlike transformers, which squeezes every size-1
/// dimension of a slice, only `dim` is removed, so `MergeModulelist` restores the exact shapes.
/// Reverse: [`MergeModulelist`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitModulelist {
    dim: usize,
}

impl SplitModulelist {
    /// Splitting along `dim`.
    pub fn new(dim: usize) -> Self {
        Self { dim }
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `(input pattern, input metadata, output keys)` per input pattern.
    fn plan(
        &self,
        inputs: &Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Vec<(String, TensorMeta, Vec<String>)>, OpError> {
        common_dtype(self, ctx, inputs)?;
        let single = inputs.len() == 1;
        let mut out = Vec::with_capacity(inputs.len());
        for (pattern, tensors) in inputs.iter() {
            let [tensor] = tensors else {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!(
                        "expects one stacked tensor for `{pattern}`, got {}",
                        tensors.len()
                    ),
                ));
            };
            let template = match (single, ctx.target_patterns) {
                (true, [target]) => target.as_str(),
                (true, targets) => {
                    return Err(OpError::new(
                        self,
                        ctx,
                        format!(
                            "one input pattern (`{pattern}`) splits into the keys of one target \
                             pattern with `*`, but the converter has target patterns {}",
                            list(targets.iter().map(String::as_str))
                        ),
                    ))
                }
                (false, _) => pattern,
            };
            check_dim(self, ctx, pattern, &tensor.shape, self.dim, false)?;
            let n = tensor.shape[self.dim];
            if n > 1 && !template.contains('*') {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!(
                        "`{template}` has no `*` to receive the index of each of the {n} slices \
                         of `{pattern}` (shape {:?}); write the module index as `*`, e.g. \
                         `experts.*.weight`",
                        tensor.shape
                    ),
                ));
            }
            let keys = (0..n)
                .map(|i| template.replace('*', &i.to_string()))
                .collect();
            out.push((pattern.to_string(), tensor.clone(), keys));
        }
        Ok(out)
    }
}

impl ConversionOp for SplitModulelist {
    fn name(&self) -> String {
        format!("SplitModulelist(dim={})", self.dim)
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        let mut out = Groups::new();
        for (_, meta, keys) in self.plan(&inputs, ctx)? {
            let mut shape = meta.shape.clone();
            shape.remove(self.dim);
            for key in keys {
                out.push(key, vec![TensorMeta::new(meta.dtype, shape.clone())]);
            }
        }
        Ok(out)
    }

    fn convert<'a>(
        &self,
        mut inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        let plan = self.plan(&metas(&inputs), ctx)?;
        let mut out = Groups::new();
        for (pattern, meta, keys) in plan {
            let tensor = take_one(self, ctx, &mut inputs, &pattern)?;
            let split = Split3::around(&meta.shape, self.dim, meta.dtype.size_in_bytes());
            let mut shape = meta.shape.clone();
            shape.remove(self.dim);
            for (i, key) in keys.into_iter().enumerate() {
                let bytes = slice_mid(&tensor.bytes, split, i, 1);
                out.push(key, vec![HostTensor::new(meta.dtype, shape.clone(), bytes)]);
            }
        }
        Ok(out)
    }

    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        Some(Arc::new(MergeModulelist::new(self.dim)))
    }
}
