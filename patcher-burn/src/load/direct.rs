//! Parameters read straight from the checkpoint into their final buffer: a group that only
//! renames one tensor (no ops) whose values the parameter stores as they are (or cast), read
//! with one kernel copy into the typed `Vec` Burn takes; a Linear weight laid out contiguously
//! is read in strips of rows into a small buffer and transposed from there while it is in cache.

use patcher_core::plan::{PlannedGroup, PlannedTarget, TargetStatus};
use patcher_core::{CheckpointError, TensorRef};

use patcher_kernels::transpose_into;

/// The source key and the target of `group` if it only renames one checkpoint tensor.
pub(crate) fn single_source(group: &PlannedGroup) -> Option<(&str, &PlannedTarget)> {
    if !group.ops.is_empty() {
        return None;
    }
    let [target] = group.targets.as_slice() else {
        return None;
    };
    let mut keys = group.sources.iter().flat_map(|(_, keys)| keys);
    match (keys.next(), keys.next()) {
        (Some(key), None) if target.status == TargetStatus::Ready => Some((key, target)),
        _ => None,
    }
}

/// `len` values of `T`, filled by `read` (given them as bytes) in one pass.
pub(crate) fn read_values<T: bytemuck::Pod, E>(
    len: usize,
    read: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<Vec<T>, E> {
    // A fresh zeroed allocation costs no write: `read` writes each byte once.
    let mut values = vec![T::zeroed(); len];
    read(bytemuck::cast_slice_mut(&mut values))?;
    Ok(values)
}

/// Rows read at a time by [`read_transposed`]: 64 rows of 1024 f32 are 256 KiB, read into L2
/// and transposed out of it before the next strip evicts them.
const STRIP_ROWS: usize = 64;

/// The `rows x cols` matrix `tensor` (of element type `T`) transposed to `cols x rows`, read in
/// strips of [`STRIP_ROWS`] rows into one reused buffer.
pub(crate) fn read_transposed<T: bytemuck::Pod>(
    tensor: &TensorRef<'_>,
    rows: usize,
    cols: usize,
) -> Result<Vec<T>, CheckpointError> {
    let mut out = vec![T::zeroed(); rows * cols];
    if out.is_empty() {
        return Ok(out);
    }
    let mut strip = vec![T::zeroed(); STRIP_ROWS.min(rows) * cols];
    let row_bytes = cols * std::mem::size_of::<T>();
    for r0 in (0..rows).step_by(STRIP_ROWS) {
        let height = STRIP_ROWS.min(rows - r0);
        let strip = &mut strip[..height * cols];
        tensor.read_range_into(r0 * row_bytes, bytemuck::cast_slice_mut(strip))?;
        transpose_into(strip, &mut out[r0..], height, cols, rows);
    }
    Ok(out)
}
