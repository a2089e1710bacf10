//! `Split`: one tensor cut along one dim into pieces of given sizes (`torch.split` with a list of
//! sizes), the reverse of a [`Concatenate`] that records its sizes.

use std::sync::Arc;

use super::check::{check_dim, describe, list, metas, take_one};
use super::concat::{cut_pieces, piece_metas, Piece};
use super::{Concatenate, ConversionOp, Groups, OpContext, OpError};
use crate::tensor::{HostTensor, TensorMeta};

/// Splits the one input tensor along `dim` into pieces of the given sizes, mapped to the target
/// patterns in order, like `torch.split(x, sizes, dim)`: there must be one size per target and
/// the sizes must add up to the input's size along `dim`. Unlike [`Chunk`](crate::ops::Chunk),
/// the pieces may differ in size, as the q, k and v rows of a fused projection do under
/// grouped-query attention. Reverse: [`Concatenate::new(dim)`](Concatenate).
///
/// A piece that is a contiguous run of a borrowed input (every piece along dim 0) stays
/// borrowed.
///
/// ```
/// use patcher_core::ops::{ConversionOp, Groups, OpContext, Split};
/// use patcher_core::HostTensor;
///
/// // A fused qkv of 2 query heads and 1 key/value head of head_dim 2: 4 + 2 + 2 rows.
/// let sources = ["qkv".to_string()];
/// let targets = ["q".to_string(), "k".to_string(), "v".to_string()];
/// let ctx = OpContext { source_patterns: &sources, target_patterns: &targets, target_key: "attn.q" };
/// let values: Vec<f32> = (0..16).map(|v| v as f32).collect();
/// let inputs = Groups::new().with("qkv", vec![HostTensor::from_f32([8, 2], &values)]);
/// let split = Split::new(0, [4, 2, 2]);
/// let out = split.convert(inputs.clone(), &ctx)?;
/// assert_eq!(out.get("q").unwrap()[0].shape, vec![4, 2]);
/// assert_eq!(out.get("k").unwrap()[0].to_f32_vec()?, vec![8.0, 9.0, 10.0, 11.0]);
/// assert_eq!(out.get("v").unwrap()[0].to_f32_vec()?, vec![12.0, 13.0, 14.0, 15.0]);
///
/// // The reverse fuses them again.
/// let fuse = split.reverse().unwrap();
/// assert_eq!(fuse.name(), "Concatenate(dim=0)");
/// let ctx = OpContext { source_patterns: &targets, target_patterns: &sources, target_key: "attn.qkv" };
/// assert_eq!(fuse.convert(out, &ctx)?, inputs);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    dim: usize,
    sizes: Vec<usize>,
}

impl Split {
    /// Splitting along `dim` into pieces of `sizes`, one per target pattern in order.
    pub fn new(dim: usize, sizes: impl Into<Vec<usize>>) -> Self {
        Self { dim, sizes: sizes.into() }
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The size of each piece along the dim, in target order.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The input pattern and metadata, and the pieces.
    fn plan(
        &self,
        inputs: &Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<(String, TensorMeta, Vec<Piece>), OpError> {
        let targets = ctx.target_patterns;
        let mut entries = inputs.iter();
        let (pattern, tensor) = match (entries.next(), entries.next()) {
            (Some((pattern, [tensor])), None) => (pattern, tensor),
            _ => {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!(
                        "expects one tensor of one pattern, got {}; split each tensor in its \
                         own converter",
                        describe(inputs)
                    ),
                ))
            }
        };
        if self.sizes.len() != targets.len() || targets.is_empty() {
            return Err(OpError::new(
                self,
                ctx,
                format!(
                    "has {} sizes {:?} for {} target patterns {} (input `{pattern}` with shape \
                     {:?}); give one size per target, in target order",
                    self.sizes.len(),
                    self.sizes,
                    targets.len(),
                    list(targets.iter().map(String::as_str)),
                    tensor.shape
                ),
            ));
        }
        check_dim(self, ctx, pattern, &tensor.shape, self.dim, false)?;
        let size = tensor.shape[self.dim];
        let sum: usize = self.sizes.iter().sum();
        if sum != size {
            return Err(OpError::new(
                self,
                ctx,
                format!(
                    "sizes {:?} add up to {sum}, but `{pattern}` (shape {:?}) has size {size} \
                     along dim {}; the sizes of the targets {} must add up to it",
                    self.sizes,
                    tensor.shape,
                    self.dim,
                    list(targets.iter().map(String::as_str))
                ),
            ));
        }
        let mut start = 0;
        let pieces = targets
            .iter()
            .zip(&self.sizes)
            .map(|(target, &len)| {
                let piece = Piece { target: target.clone(), start, len };
                start += len;
                piece
            })
            .collect();
        Ok((pattern.to_string(), tensor.clone(), pieces))
    }
}

impl ConversionOp for Split {
    fn name(&self) -> String {
        format!("Split(dim={}, sizes={:?})", self.dim, self.sizes)
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        let (_, meta, pieces) = self.plan(&inputs, ctx)?;
        Ok(piece_metas(&meta, self.dim, pieces))
    }

    fn convert<'a>(
        &self,
        mut inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        let (pattern, meta, pieces) = self.plan(&metas(&inputs), ctx)?;
        let tensor = take_one(self, ctx, &mut inputs, &pattern)?;
        Ok(cut_pieces(&tensor, &meta, self.dim, pieces))
    }

    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        Some(Arc::new(Concatenate::new(self.dim)))
    }
}
