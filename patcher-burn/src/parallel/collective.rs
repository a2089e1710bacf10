//! [`Collective`]: the all-reduce of burn-collective, the distributed engine of Burn 0.21 (peers
//! as threads with a device each on one machine; across machines through its global
//! orchestrator).

use std::marker::PhantomData;

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn_collective::{
    all_reduce, finish_collective, register, CollectiveConfig, PeerId, ReduceOperation,
};
use patcher_core::plan::TensorParallel;

use super::{AllReduce, TensorParallelPeer};

/// A peer that could not join its burn-collective group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerJoinError {
    /// burn-collective refused the registration.
    #[error(
        "tensor-parallel peer {rank} of {world} could not join its burn-collective group: \
         {reason}; give every peer of the group the same CollectiveConfig (its number of \
         devices on this machine, and the same global settings across machines) and a rank of \
         its own"
    )]
    Register {
        /// The peer's rank.
        rank: usize,
        /// The group's size.
        world: usize,
        /// burn-collective's error.
        reason: String,
    },
}

/// A peer registered with burn-collective: its all-reduce is burn-collective's, its peer id its
/// rank. It leaves the group (`finish_collective`) when the last model holding it is dropped.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::prelude::*;
/// use patcher_burn::burn_collective::CollectiveConfig;
/// use patcher_burn::Collective;
/// use patcher_core::plan::TensorParallel;
///
/// type B = NdArray;
/// // Two peers as threads on one machine, each summing its own tensor with the other's.
/// let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
///     let peers: Vec<_> = (0..2)
///         .map(|rank| {
///             s.spawn(move || {
///                 let device = Default::default();
///                 let config = CollectiveConfig::default().with_num_devices(2);
///                 let plan = TensorParallel::new(rank, 2).unwrap();
///                 let peer = Collective::<B>::register(plan, &device, config).unwrap();
///                 let x = Tensor::<B, 1>::from_floats([rank as f32, 1.0], &device);
///                 peer.all_reduce(x).into_data().to_vec().unwrap()
///             })
///         })
///         .collect();
///     peers.into_iter().map(|p| p.join().unwrap()).collect()
/// });
/// assert_eq!(sums, [[1.0, 2.0], [1.0, 2.0]]);
/// ```
pub struct Collective<B: Backend> {
    peer: PeerId,
    backend: PhantomData<fn() -> B>,
}

impl<B: Backend> Collective<B> {
    /// Registers peer `plan.rank()` of `plan.world()` on `device` with burn-collective and
    /// gives the peer to build and load its model with.
    ///
    /// `config` is burn-collective's: on one machine,
    /// `CollectiveConfig::default().with_num_devices(world)`; across machines, the peers on
    /// this one and the global orchestrator's address (see `docs/tensor-parallel.md`). It
    /// blocks until every peer of the machine has registered, as burn-collective does.
    ///
    /// Use the inner backend of an `Autodiff` one (burn-collective reduces primitives).
    pub fn register(
        plan: TensorParallel,
        device: &B::Device,
        config: CollectiveConfig,
    ) -> Result<TensorParallelPeer<B>, PeerJoinError> {
        let (rank, world) = (plan.rank(), plan.world());
        let join_error = |reason: String| PeerJoinError::Register { rank, world, reason };
        let id = u32::try_from(rank).map_err(|_| join_error("the rank is over u32".into()))?;
        let peer = PeerId(id);
        register::<B>(peer, device.clone(), config).map_err(|e| join_error(format!("{e:?}")))?;
        let reduce = Self { peer, backend: PhantomData };
        Ok(TensorParallelPeer::new(plan, reduce))
    }
}

impl<B: Backend> AllReduce<B> for Collective<B> {
    fn sum(&self, tensor: FloatTensor<B>) -> FloatTensor<B> {
        all_reduce::<B>(self.peer, tensor, ReduceOperation::Sum).unwrap_or_else(|e| {
            panic!(
                "the all-reduce of tensor-parallel {} failed ({e:?}): every peer must run the \
                 same forward, on inputs of the same shape",
                self.peer
            )
        })
    }
}

impl<B: Backend> Drop for Collective<B> {
    fn drop(&mut self) {
        // Leaving cannot fail in a way the group could act on: burn-collective only refuses
        // a peer that is not registered.
        let _ = finish_collective::<B>(self.peer);
    }
}
