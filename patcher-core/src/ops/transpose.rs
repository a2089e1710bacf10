//! `Transpose`: swaps two dimensions (`torch.transpose(...).contiguous()`).

use std::sync::Arc;

use super::check::{check_dim, common_dtype, metas, single_tensor, take_one};
use super::layout::permute;
use super::{ConversionOp, Groups, OpContext, OpError};
use crate::tensor::{HostTensor, TensorMeta};

/// Swaps dimensions `dim0` and `dim1` of the one input tensor. Reverse: the same swap
/// (`Transpose(dim1, dim0)`).
///
/// transformers' `check_dims` (transpose only when the checkpoint shape differs from the model
/// parameter) needs the model's shapes and is not offered; the plan reports a shape mismatch
/// instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transpose {
    dim0: usize,
    dim1: usize,
}

impl Transpose {
    /// Swapping `dim0` and `dim1`.
    pub fn new(dim0: usize, dim1: usize) -> Self {
        Self { dim0, dim1 }
    }

    /// The two dimensions, in order.
    pub fn dims(&self) -> (usize, usize) {
        (self.dim0, self.dim1)
    }

    /// `(input pattern, output key, input metadata, axis permutation)`.
    fn plan(
        &self,
        inputs: &Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<(String, String, TensorMeta, Vec<usize>), OpError> {
        common_dtype(self, ctx, inputs)?;
        let (pattern, tensor, key) = single_tensor(self, ctx, inputs)?;
        check_dim(self, ctx, pattern, &tensor.shape, self.dim0, false)?;
        check_dim(self, ctx, pattern, &tensor.shape, self.dim1, false)?;
        let mut perm: Vec<usize> = (0..tensor.shape.len()).collect();
        perm.swap(self.dim0, self.dim1);
        Ok((pattern.to_string(), key, tensor.clone(), perm))
    }
}

impl ConversionOp for Transpose {
    fn name(&self) -> String {
        format!("Transpose(dim0={}, dim1={})", self.dim0, self.dim1)
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        let (_, key, meta, perm) = self.plan(&inputs, ctx)?;
        let shape = perm.iter().map(|&a| meta.shape[a]).collect::<Vec<_>>();
        Ok(Groups::new().with(key, vec![TensorMeta::new(meta.dtype, shape)]))
    }

    fn convert<'a>(
        &self,
        mut inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        let (pattern, key, meta, perm) = self.plan(&metas(&inputs), ctx)?;
        let tensor = take_one(self, ctx, &mut inputs, &pattern)?;
        let elem = meta.dtype.size_in_bytes();
        let bytes = permute(tensor.bytes, elem, &meta.shape, &perm);
        let shape = perm.iter().map(|&a| meta.shape[a]).collect::<Vec<_>>();
        Ok(Groups::new().with(key, vec![HostTensor::new(meta.dtype, shape, bytes)]))
    }

    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        Some(Arc::new(Transpose::new(self.dim1, self.dim0)))
    }
}
