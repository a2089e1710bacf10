//! [`PeerSum`]: the field a class keeps to sum its partial results over its tensor-parallel
//! peers: a Burn module without parameters, so the class still derives `Module`.

use std::fmt;

use burn::module::{
    AutodiffModule, Content, Devices, EmptyRecord, Module, ModuleDisplay, ModuleDisplayDefault,
    ModuleMapper, ModuleVisitor,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::TensorParallelPeer;
use crate::BuildContext;

/// Sums a branch's partial result over the tensor-parallel peers the class was built with, and
/// passes it through on one device: the field a class whose forward ends in a rowwise
/// projection keeps (the kit's decoder layers do, through `patcher_models`'
/// `pre_norm_residuals`).
///
/// ```
/// use burn::backend::NdArray;
/// use burn::prelude::*;
/// use patcher_burn::{BuildContext, PeerSum};
///
/// type B = NdArray;
/// let device = Default::default();
/// // Built on one device: the identity.
/// let sum = PeerSum::<B>::new(&BuildContext::plain(&device));
/// let x = Tensor::<B, 2>::ones([2, 3], &device);
/// assert_eq!(sum.forward(x.clone()).into_data(), x.into_data());
/// ```
#[derive(Clone)]
pub struct PeerSum<B: Backend> {
    state: State<B>,
}

#[derive(Clone)]
enum State<B: Backend> {
    OneDevice,
    Peer(TensorParallelPeer<B>),
    /// Crossed the `Autodiff` boundary (`valid`, `from_inner`), where the all-reduce, made for
    /// one backend, cannot follow: a forward here would sum nothing, so it refuses.
    Detached {
        rank: usize,
        world: usize,
    },
}

impl<B: Backend> PeerSum<B> {
    /// The sum of the peer `ctx` builds the model as
    /// ([`BuildContext::tensor_parallel`]), or the identity.
    pub fn new(ctx: &BuildContext<'_, B>) -> Self {
        let state = match ctx.tensor_parallel() {
            Some(peer) => State::Peer(peer.clone()),
            None => State::OneDevice,
        };
        Self { state }
    }

    /// The peer it sums over, if any.
    pub fn peer(&self) -> Option<&TensorParallelPeer<B>> {
        match &self.state {
            State::Peer(peer) => Some(peer),
            _ => None,
        }
    }

    /// `partial` summed over every peer ([`TensorParallelPeer::all_reduce`]), or `partial`
    /// itself on one device.
    ///
    /// # Panics
    ///
    /// When the all-reduce fails, or on a copy made across the `Autodiff` boundary
    /// (`valid()`), which has no all-reduce: build tensor-parallel peers on the inner backend.
    pub fn forward<const D: usize>(&self, partial: Tensor<B, D>) -> Tensor<B, D> {
        match &self.state {
            State::OneDevice => partial,
            State::Peer(peer) => peer.all_reduce(partial),
            State::Detached { rank, world } => panic!(
                "tensor-parallel peer {rank} of {world} lost its all-reduce crossing the \
                 Autodiff boundary (valid or from_inner); build tensor-parallel peers on the \
                 inner backend"
            ),
        }
    }

    fn detached<B2: Backend>(&self) -> PeerSum<B2> {
        let state = match &self.state {
            State::OneDevice => State::OneDevice,
            State::Peer(peer) => {
                let (rank, world) = (peer.plan().rank(), peer.plan().world());
                State::Detached { rank, world }
            }
            State::Detached { rank, world } => State::Detached { rank: *rank, world: *world },
        };
        PeerSum { state }
    }
}

impl<B: Backend> fmt::Debug for PeerSum<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::OneDevice => f.write_str("PeerSum(one device)"),
            State::Peer(peer) => write!(f, "PeerSum({peer:?})"),
            State::Detached { rank, world } => write!(f, "PeerSum(detached {rank}/{world})"),
        }
    }
}

/// No parameters: nothing to visit, map, record or move.
impl<B: Backend> Module<B> for PeerSum<B> {
    type Record = EmptyRecord;

    fn visit<V: ModuleVisitor<B>>(&self, _visitor: &mut V) {}

    fn map<M: ModuleMapper<B>>(self, _mapper: &mut M) -> Self {
        self
    }

    fn load_record(self, _record: Self::Record) -> Self {
        self
    }

    fn into_record(self) -> Self::Record {
        EmptyRecord::new()
    }

    fn to_device(self, _device: &B::Device) -> Self {
        self
    }

    fn fork(self, _device: &B::Device) -> Self {
        self
    }

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        devices
    }
}

impl<B: AutodiffBackend> AutodiffModule<B> for PeerSum<B> {
    type InnerModule = PeerSum<B::InnerBackend>;

    fn valid(&self) -> Self::InnerModule {
        self.detached()
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        module.detached()
    }
}

impl<B: Backend> ModuleDisplayDefault for PeerSum<B> {
    fn content(&self, content: Content) -> Option<Content> {
        content.add_single(&format!("{self:?}")).optional()
    }
}

impl<B: Backend> ModuleDisplay for PeerSum<B> {}

impl<B: Backend> fmt::Display for PeerSum<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
