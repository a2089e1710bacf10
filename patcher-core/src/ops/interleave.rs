//! `Interleave`: de-interleaves (or, inverted, interleaves) pairs along one dimension.

use std::sync::Arc;

use super::check::{check_dim, common_dtype, metas, single_tensor, take_one};
use super::layout::permute;
use super::{ConversionOp, Groups, OpContext, OpError};
use crate::tensor::{HostTensor, TensorMeta};

/// Views dimension `dim` of size `D` as `[D/2, 2]`, swaps the two and flattens back, turning
/// `[g0, u0, g1, u1, …]` into `[g0, g1, …, u0, u1, …]` (transformers' `Interleave`). With
/// `inverse` the view is `[2, D/2]`, which undoes it. Reverse: the op with `inverse` flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interleave {
    dim: usize,
    inverse: bool,
}

/// What [`Interleave`] does to its input: the shape with `dim` split in two, and the axis swap.
#[derive(Debug)]
struct Plan {
    pattern: String,
    key: String,
    meta: TensorMeta,
    split: Vec<usize>,
    perm: Vec<usize>,
}

impl Interleave {
    /// De-interleaving along `dim`.
    pub fn new(dim: usize) -> Self {
        Self { dim, inverse: false }
    }

    /// The same op, interleaving instead when `inverse` is true.
    pub fn with_inverse(self, inverse: bool) -> Self {
        Self { inverse, ..self }
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether this is the inverse (interleaving) direction.
    pub fn is_inverse(&self) -> bool {
        self.inverse
    }

    fn plan(&self, inputs: &Groups<TensorMeta>, ctx: &OpContext<'_>) -> Result<Plan, OpError> {
        common_dtype(self, ctx, inputs)?;
        let (pattern, tensor, key) = single_tensor(self, ctx, inputs)?;
        check_dim(self, ctx, pattern, &tensor.shape, self.dim, false)?;
        let size = tensor.shape[self.dim];
        if size % 2 != 0 {
            return Err(OpError::new(
                self,
                ctx,
                format!(
                    "dim {} of `{pattern}` (shape {:?}) has odd size {size}; interleaved pairs \
                     need an even size",
                    self.dim, tensor.shape
                ),
            ));
        }
        let pair = if self.inverse {
            [2, size / 2]
        } else {
            [size / 2, 2]
        };
        let mut split = tensor.shape.clone();
        split.splice(self.dim..=self.dim, pair);
        let mut perm: Vec<usize> = (0..split.len()).collect();
        perm.swap(self.dim, self.dim + 1);
        Ok(Plan {
            pattern: pattern.to_string(),
            key,
            meta: tensor.clone(),
            split,
            perm,
        })
    }
}

impl ConversionOp for Interleave {
    fn name(&self) -> String {
        format!("Interleave(dim={}, inverse={})", self.dim, self.inverse)
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        let plan = self.plan(&inputs, ctx)?;
        Ok(Groups::new().with(plan.key, vec![plan.meta]))
    }

    fn convert<'a>(
        &self,
        mut inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        let Plan { pattern, key, meta, split, perm } = self.plan(&metas(&inputs), ctx)?;
        let tensor = take_one(self, ctx, &mut inputs, &pattern)?;
        let bytes = permute(tensor.bytes, meta.dtype.size_in_bytes(), &split, &perm);
        Ok(Groups::new().with(key, vec![HostTensor::new(meta.dtype, meta.shape, bytes)]))
    }

    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        Some(Arc::new(self.with_inverse(!self.inverse)))
    }
}
