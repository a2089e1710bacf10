//! Tensors' values on the host and back: the moves every kernel starts and ends with.

use burn::prelude::*;

/// Elements per rayon task: large enough that a task outweighs its scheduling.
pub(crate) const PART: usize = 1 << 14;

/// An f32 tensor's values (the caller checked the dtype): moved out of the backend without a
/// copy where it allows it (Flex, a contiguous tensor not shared), copied otherwise.
pub(crate) fn f32_values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    let data = tensor.into_data();
    if data.as_slice::<f32>().is_ok() {
        // Cannot fail: the same dtype check and cast as `as_slice`'s.
        data.into_vec().unwrap_or_default()
    } else {
        // Bytes not aligned for f32 (never seen from Burn's CPU backends).
        data.iter().collect()
    }
}

/// `values` as a tensor of `shape` on `device` (moved in without a copy on Flex).
pub(crate) fn tensor_of<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
