//! The forward of a tensor-parallel peer: the model of one peer holds its slices of the split
//! parameters (loaded with its [`TensorParallel`](patcher_core::plan::TensorParallel) plan), so
//! after a rowwise projection each peer holds a partial sum of the single-device result; the
//! [`TensorParallelPeer`] the model was built with sums the partials over every peer (an
//! all-reduce), on `Collective` (burn-collective, feature `collective`) or any [`AllReduce`].
//! And within one process, a [`DeviceMap`] puts layers on several devices (a pipeline).

#[cfg(feature = "collective")]
mod collective;
mod device_map;
mod peer;
mod sum;

#[cfg(feature = "collective")]
pub use collective::{Collective, PeerJoinError};
pub use device_map::{module_device, to_device_via_host, DeviceMap, DeviceMapError};
pub use peer::{AllReduce, TensorParallelPeer};
pub use sum::PeerSum;
