//! Reading one peer's part of a checkpoint tensor ([`ShardSlice`], a tensor-parallel load): one
//! positioned read per contiguous run of the part, straight into the caller's buffer.

use patcher_core::plan::ShardSlice;
use patcher_core::{CheckpointError, HostTensor, TensorRef};

/// Runs shorter than this on average (the columns of a narrow rowwise weight) make the part be
/// read as the whole tensor and sliced in memory: one read instead of thousands of tiny ones.
const MIN_RUN_BYTES: usize = 256;

/// Reads `slice` of `tensor` into `dst` (exactly the part's size, in the tensor's dtype);
/// returns the bytes read from the file.
pub(crate) fn read_slice_into(
    tensor: &TensorRef<'_>,
    slice: &ShardSlice,
    dst: &mut [u8],
) -> Result<usize, CheckpointError> {
    let runs = slice.byte_runs(tensor.shape(), tensor.dtype().size_in_bytes());
    let len: usize = runs.iter().map(|run| run.len()).sum();
    if len != dst.len() {
        return Err(CheckpointError::ReadRange {
            key: tensor.name().to_string(),
            start: 0,
            end: dst.len(),
            size: len,
        });
    }
    if runs.len() > 1 && len / runs.len() < MIN_RUN_BYTES {
        let whole = tensor.read()?;
        dst.copy_from_slice(&slice.take(&whole).bytes);
        return Ok(whole.num_bytes());
    }
    let mut at = 0;
    for run in runs {
        let end = at + run.len();
        tensor.read_range_into(run.start, &mut dst[at..end])?;
        at = end;
    }
    Ok(len)
}

/// [`read_slice_into`] a new host tensor of the part's shape; with the bytes read.
pub(crate) fn read_slice(
    tensor: &TensorRef<'_>,
    slice: &ShardSlice,
) -> Result<(HostTensor<'static>, usize), CheckpointError> {
    let shape = slice.local_shape(tensor.shape());
    let len = shape.iter().product::<usize>() * tensor.dtype().size_in_bytes();
    let mut bytes = vec![0u8; len];
    let read = read_slice_into(tensor, slice, &mut bytes)?;
    Ok((HostTensor::new(tensor.dtype(), shape, bytes), read))
}
