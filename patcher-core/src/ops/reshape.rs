//! `Reshape`: a new shape for the same row-major data (never copies).

use std::sync::Arc;

use super::check::{common_dtype, metas, single_tensor, take_one};
use super::layout::product;
use super::{ConversionOp, Groups, OpContext, OpError};
use crate::tensor::{HostTensor, TensorMeta};

/// Gives the one input tensor a new shape with the same number of elements; the bytes are
/// kept as they are (a borrow stays a borrow). A shape may contain one `-1`, inferred from the
/// element count, like `torch.reshape`.
///
/// [`Reshape::new`] accepts any input shape and so has no reverse; [`Reshape::between`] also
/// checks the input against `from` and reverses to `Reshape::between(to, from)` (e.g. a Conv3d
/// kernel `[out, in, t, h, w]` to a Linear `[out, -1]` and back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshape {
    from: Option<Vec<isize>>,
    to: Vec<isize>,
}

impl Reshape {
    /// Reshaping any input to `to` (at most one `-1`).
    pub fn new(to: impl Into<Vec<isize>>) -> Self {
        Self { from: None, to: to.into() }
    }

    /// Reshaping inputs of shape `from` to `to` (each with at most one `-1`); reversible.
    pub fn between(from: impl Into<Vec<isize>>, to: impl Into<Vec<isize>>) -> Self {
        Self { from: Some(from.into()), to: to.into() }
    }

    /// Resolves `spec` (with at most one `-1`) for `count` elements.
    fn resolve(
        &self,
        ctx: &OpContext<'_>,
        spec: &[isize],
        count: usize,
        pattern: &str,
        shape: &[usize],
    ) -> Result<Vec<usize>, OpError> {
        let fail = |why: &str| {
            OpError::new(
                self,
                ctx,
                format!("cannot view `{pattern}` with shape {shape:?} as {spec:?}: {why}"),
            )
        };
        if spec.iter().filter(|&&d| d == -1).count() > 1 {
            return Err(fail("at most one dimension may be -1"));
        }
        if spec.iter().any(|&d| d < -1) {
            return Err(fail("dimensions must be sizes or -1"));
        }
        let known: usize = spec
            .iter()
            .filter(|&&d| d >= 0)
            .map(|&d| d as usize)
            .product();
        let resolved: Vec<usize> = if spec.contains(&-1) {
            if known == 0 || !count.is_multiple_of(known) {
                return Err(fail(&format!(
                    "{count} elements do not divide into the known dimensions"
                )));
            }
            spec.iter()
                .map(|&d| if d == -1 { count / known } else { d as usize })
                .collect()
        } else {
            spec.iter().map(|&d| d as usize).collect()
        };
        if product(&resolved) != count {
            return Err(fail(&format!(
                "it has {count} elements, the new shape {}",
                product(&resolved)
            )));
        }
        Ok(resolved)
    }

    /// `(input pattern, output key, output metadata)`.
    fn plan(
        &self,
        inputs: &Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<(String, String, TensorMeta), OpError> {
        common_dtype(self, ctx, inputs)?;
        let (pattern, tensor, key) = single_tensor(self, ctx, inputs)?;
        let count = tensor.num_elements();
        if let Some(from) = &self.from {
            let expected = self.resolve(ctx, from, count, pattern, &tensor.shape)?;
            if expected != tensor.shape {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!(
                        "`{pattern}` has shape {:?}, not the {from:?} this reshape starts from",
                        tensor.shape
                    ),
                ));
            }
        }
        let shape = self.resolve(ctx, &self.to, count, pattern, &tensor.shape)?;
        Ok((
            pattern.to_string(),
            key,
            TensorMeta::new(tensor.dtype, shape),
        ))
    }
}

impl ConversionOp for Reshape {
    fn name(&self) -> String {
        match &self.from {
            Some(from) => format!("Reshape({from:?} -> {:?})", self.to),
            None => format!("Reshape({:?})", self.to),
        }
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        let (_, key, meta) = self.plan(&inputs, ctx)?;
        Ok(Groups::new().with(key, vec![meta]))
    }

    fn convert<'a>(
        &self,
        mut inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        let (pattern, key, meta) = self.plan(&metas(&inputs), ctx)?;
        let tensor = take_one(self, ctx, &mut inputs, &pattern)?;
        let reshaped = HostTensor::new(meta.dtype, meta.shape, tensor.bytes);
        Ok(Groups::new().with(key, vec![reshaped]))
    }

    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        let from = self.from.clone()?;
        Some(Arc::new(Reshape::between(self.to.clone(), from)))
    }
}
