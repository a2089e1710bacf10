//! Byte-level data movement shared by the ops: slicing, concatenating and permuting row-major
//! buffers whose element size comes from the dtype.
//!
//! Every helper writes each output byte once (`Vec::with_capacity` plus `extend_from_slice` of
//! the longest contiguous runs) and keeps a borrowed input borrowed when the output is a
//! contiguous part of it, so an op on borrowed data copies only what it must.

use std::borrow::Cow;
use std::ops::Range;

/// Product of dimensions (1 for none).
pub(crate) fn product(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// `bytes[range]`, borrowed if `bytes` is borrowed, copied otherwise.
pub(crate) fn slice_cow<'a>(bytes: &Cow<'a, [u8]>, range: Range<usize>) -> Cow<'a, [u8]> {
    match bytes {
        Cow::Borrowed(b) => Cow::Borrowed(&b[range]),
        Cow::Owned(v) => Cow::Owned(v[range].to_vec()),
    }
}

/// A tensor seen as `[outer, mid, inner]` around one dimension, in bytes per `inner` block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split3 {
    /// Product of the dimensions before `dim`.
    pub(crate) outer: usize,
    /// Size of `dim` (1 for a dimension being inserted by a stack).
    pub(crate) mid: usize,
    /// Bytes of the dimensions after `dim` (times the element size).
    pub(crate) inner_bytes: usize,
}

impl Split3 {
    /// `shape` around `dim` for elements of `elem` bytes.
    pub(crate) fn around(shape: &[usize], dim: usize, elem: usize) -> Self {
        Self {
            outer: product(&shape[..dim]),
            mid: shape[dim],
            inner_bytes: product(&shape[dim + 1..]) * elem,
        }
    }

    /// `shape` with a new dimension of size 1 inserted at `dim` (for stacking).
    pub(crate) fn inserted(shape: &[usize], dim: usize, elem: usize) -> Self {
        Self {
            outer: product(&shape[..dim]),
            mid: 1,
            inner_bytes: product(&shape[dim..]) * elem,
        }
    }
}

/// Concatenates `parts` along their `mid` dimension; all parts share `outer` and `inner_bytes`.
/// One slab per part and outer index is copied straight from the inputs.
pub(crate) fn concat(parts: &[(&[u8], Split3)]) -> Vec<u8> {
    let total: usize = parts.iter().map(|(b, _)| b.len()).sum();
    let mut out = Vec::with_capacity(total);
    let outer = parts.first().map_or(0, |(_, s)| s.outer);
    for o in 0..outer {
        for (bytes, s) in parts {
            let slab = s.mid * s.inner_bytes;
            out.extend_from_slice(&bytes[o * slab..(o + 1) * slab]);
        }
    }
    out
}

/// Elements `start..start + len` of the `mid` dimension. Borrowed (no copy) when the result is
/// one contiguous run of a borrowed input, i.e. when `outer == 1`.
pub(crate) fn slice_mid<'a>(
    bytes: &Cow<'a, [u8]>,
    s: Split3,
    start: usize,
    len: usize,
) -> Cow<'a, [u8]> {
    if s.outer == 1 {
        return slice_cow(bytes, start * s.inner_bytes..(start + len) * s.inner_bytes);
    }
    let slab = s.mid * s.inner_bytes;
    let run = len * s.inner_bytes;
    let mut out = Vec::with_capacity(s.outer * run);
    for o in 0..s.outer {
        let from = o * slab + start * s.inner_bytes;
        out.extend_from_slice(&bytes[from..from + run]);
    }
    Cow::Owned(out)
}

/// One axis of a permuted view: its size and its stride in the input, in elements.
#[derive(Debug, Clone, Copy)]
struct Axis {
    size: usize,
    stride: usize,
}

/// The bytes of the row-major tensor `shape` with its axes permuted: output axis `i` is input
/// axis `perm[i]` (like `torch.permute(...).contiguous()`).
///
/// Size-1 axes are dropped and axes that stay neighbours are fused, so a permutation that does
/// not change the memory order returns the input as is (a borrow stays a borrow), and the
/// copy proceeds in the longest contiguous runs the permutation allows.
pub(crate) fn permute<'a>(
    bytes: Cow<'a, [u8]>,
    elem: usize,
    shape: &[usize],
    perm: &[usize],
) -> Cow<'a, [u8]> {
    let total = product(shape);
    if total == 0 {
        return bytes;
    }
    // Input strides in elements.
    let mut strides = vec![1usize; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * shape[a + 1];
    }
    // Output axes (as input axes), without size-1 axes, fused where the input order continues.
    let mut axes: Vec<(usize, Axis)> = Vec::new(); // (last input axis of the group, axis)
    for &a in perm.iter().filter(|&&a| shape[a] != 1) {
        match axes.last_mut() {
            // Input axis `a` follows the previous group's last axis (ignoring size-1 axes in
            // between): the two are one contiguous axis.
            Some((last, axis)) if a > *last && (*last + 1..a).all(|b| shape[b] == 1) => {
                axis.size *= shape[a];
                axis.stride = strides[a];
                *last = a;
            }
            _ => axes.push((a, Axis { size: shape[a], stride: strides[a] })),
        }
    }
    let axes: Vec<Axis> = axes.into_iter().map(|(_, axis)| axis).collect();
    // One group left (or none): the memory order is unchanged.
    if axes.len() <= 1 {
        return bytes;
    }
    // The innermost output group is a contiguous run if it is innermost in the input too.
    let (run_elems, loops) = match axes.split_last() {
        Some((last, rest)) if last.stride == 1 => (last.size, rest),
        _ => (1, axes.as_slice()),
    };
    let run = run_elems * elem;
    let mut out = Vec::with_capacity(total * elem);
    let mut index = vec![0usize; loops.len()];
    let mut offset = 0usize; // in elements
    for _ in 0..product(&loops.iter().map(|a| a.size).collect::<Vec<_>>()) {
        let start = offset * elem;
        out.extend_from_slice(&bytes[start..start + run]);
        // Odometer step over the output axes, innermost first.
        for (i, axis) in loops.iter().enumerate().rev() {
            index[i] += 1;
            offset += axis.stride;
            if index[i] < axis.size {
                break;
            }
            offset -= axis.stride * axis.size;
            index[i] = 0;
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(values: &[u8]) -> Cow<'_, [u8]> {
        Cow::Borrowed(values)
    }

    #[test]
    fn permute_transposes_a_matrix() {
        // [[0, 1, 2], [3, 4, 5]] -> [[0, 3], [1, 4], [2, 5]]
        let out = permute(bytes(&[0, 1, 2, 3, 4, 5]), 1, &[2, 3], &[1, 0]);
        assert_eq!(out.as_ref(), &[0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn permute_keeps_runs_and_borrows() {
        // Swapping a size-1 axis changes nothing in memory: no copy.
        let data = [1, 2, 3, 4];
        let out = permute(bytes(&data), 1, &[1, 4], &[1, 0]);
        assert!(matches!(out, Cow::Borrowed(_)));
        // [2, 2, 2] with axes (1, 0, 2): runs of 2 elements of 2 bytes.
        let data: Vec<u8> = (0..16).collect();
        let out = permute(bytes(&data), 2, &[2, 2, 2], &[1, 0, 2]);
        assert_eq!(
            out.as_ref(),
            &[0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15]
        );
    }

    #[test]
    fn concat_and_slice() {
        // Two [2, 1] and [2, 2] matrices along dim 1.
        let a = [1u8, 2];
        let b = [3u8, 4, 5, 6];
        let out = concat(&[
            (&a, Split3::around(&[2, 1], 1, 1)),
            (&b, Split3::around(&[2, 2], 1, 1)),
        ]);
        assert_eq!(out, vec![1, 3, 4, 2, 5, 6]);
        let whole = Cow::Owned(out);
        let s = Split3::around(&[2, 3], 1, 1);
        assert_eq!(slice_mid(&whole, s, 1, 2).as_ref(), &[3, 4, 5, 6]);
        let borrowed = bytes(&b);
        let rows = slice_mid(&borrowed, Split3::around(&[2, 2], 0, 1), 1, 1);
        assert!(matches!(rows, Cow::Borrowed(&[5, 6])));
    }
}
