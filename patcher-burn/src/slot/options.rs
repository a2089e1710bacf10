//! [`BuildOptions`]: what a build adds to the patcher's substitutions: the tensor-parallel peer
//! the model is, and the devices its slots go to.

use burn::tensor::backend::Backend;

use crate::{DeviceMap, TensorParallelPeer};

/// What [`BuildContext::build_with`](super::BuildContext::build_with) gives the constructors
/// besides the patcher's classes: the peer a tensor-parallel model sums its partial results
/// with ([`BuildContext::tensor_parallel`](super::BuildContext::tensor_parallel)), and the
/// device of each slot ([`BuildContext::device`](super::BuildContext::device)).
#[derive(Debug, Clone)]
pub struct BuildOptions<B: Backend> {
    pub(super) peer: Option<TensorParallelPeer<B>>,
    pub(super) device_map: Option<DeviceMap<B>>,
}

impl<B: Backend> Default for BuildOptions<B> {
    fn default() -> Self {
        Self { peer: None, device_map: None }
    }
}

impl<B: Backend> BuildOptions<B> {
    /// Builds the model as `peer` of a tensor-parallel group.
    pub fn tensor_parallel(mut self, peer: TensorParallelPeer<B>) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Builds each slot `map` names on its device.
    pub fn device_map(mut self, map: DeviceMap<B>) -> Self {
        self.device_map = Some(map);
        self
    }

    /// The tensor-parallel peer, if any.
    pub fn peer(&self) -> Option<&TensorParallelPeer<B>> {
        self.peer.as_ref()
    }
}
