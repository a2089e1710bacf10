//! [`TensorParallelPeer`]: one peer's plan and the all-reduce that sums its partial results
//! with its peers'.

use std::fmt;
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;
use patcher_core::plan::TensorParallel;

/// How the peers of a tensor-parallel group sum their partial results: an all-reduce.
///
/// `Collective` is burn-collective's (feature `collective`); implement it
/// for another transport. Every peer calls [`sum`](Self::sum) the same number of times, on
/// tensors of the same shape, in the same order (a model's forward does).
pub trait AllReduce<B: Backend>: Send + Sync {
    /// The element-wise sum of `tensor` over every peer of the group, the same on each peer.
    ///
    /// # Panics
    ///
    /// When the group cannot reduce (a peer left, or called with another shape): a forward has
    /// no error to return, and its peers are out of step for good.
    fn sum(&self, tensor: FloatTensor<B>) -> FloatTensor<B>;
}

/// One peer of a tensor-parallel group: the plan it loads its slices with and the all-reduce
/// its forward sums partial results with (transformers' `tp_plan` with its device mesh).
///
/// A model built with one ([`Pretrained::tensor_parallel`](crate::Pretrained::tensor_parallel),
/// or [`BuildContext::tensor_parallel`](crate::BuildContext::tensor_parallel) for a model's
/// own constructor) sums each branch that ends in a rowwise projection; cloning it shares the
/// same all-reduce.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::prelude::*;
/// use burn::tensor::ops::FloatTensor;
/// use patcher_burn::{AllReduce, TensorParallelPeer};
/// use patcher_core::plan::TensorParallel;
///
/// type B = NdArray;
/// /// A group of one peer: the sum is the tensor itself.
/// struct Alone;
/// impl AllReduce<B> for Alone {
///     fn sum(&self, tensor: FloatTensor<B>) -> FloatTensor<B> {
///         tensor
///     }
/// }
/// let peer = TensorParallelPeer::new(TensorParallel::new(0, 1)?, Alone);
/// let x = Tensor::<B, 2>::ones([2, 3], &Default::default());
/// assert_eq!(peer.all_reduce(x.clone()).into_data(), x.into_data());
/// # Ok::<(), patcher_core::plan::ShardError>(())
/// ```
pub struct TensorParallelPeer<B: Backend> {
    plan: TensorParallel,
    reduce: Arc<dyn AllReduce<B>>,
}

impl<B: Backend> TensorParallelPeer<B> {
    /// The peer of `plan` (its rank, its group's size, its slices), summing with `reduce`.
    pub fn new(plan: TensorParallel, reduce: impl AllReduce<B> + 'static) -> Self {
        Self { plan, reduce: Arc::new(reduce) }
    }

    /// The plan its model is loaded with.
    pub fn plan(&self) -> &TensorParallel {
        &self.plan
    }

    /// The sum of `partial` over every peer of the group.
    ///
    /// # Panics
    ///
    /// When the all-reduce fails (see [`AllReduce::sum`]).
    pub fn all_reduce<const D: usize>(&self, partial: Tensor<B, D>) -> Tensor<B, D> {
        let sum = self.reduce.sum(partial.into_primitive().tensor());
        Tensor::from_primitive(TensorPrimitive::Float(sum))
    }
}

impl<B: Backend> Clone for TensorParallelPeer<B> {
    fn clone(&self) -> Self {
        Self { plan: self.plan.clone(), reduce: Arc::clone(&self.reduce) }
    }
}

impl<B: Backend> fmt::Debug for TensorParallelPeer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorParallelPeer")
            .field("rank", &self.plan.rank())
            .field("world", &self.plan.world())
            .finish_non_exhaustive()
    }
}
