//! The loader's transpose of a Linear weight from PyTorch's `[out, in]` into Burn's `[in, out]`,
//! in cache-sized tiles; on x86_64 with AVX2 ([`Isa::detect`]) each 8 x 8 block is a register
//! shuffle.

use crate::simd::Isa;

/// Side of the square tiles of [`transpose_into`]: a tile of f32 is 16 KiB read and 16 KiB written,
/// both in L1/L2.
const TILE: usize = 64;
/// Side of the blocks a tile is copied in: 8 contiguous values read from each of 8 rows, then
/// written as 8 contiguous values to each of 8 output rows (the compiler turns the block into
/// vector shuffles).
const BLOCK: usize = 8;

/// Writes the transpose of `src` (`rows x cols`) into `dst`, whose rows are `dst_stride`
/// values apart: `dst[c * dst_stride + r] = src[r * cols + c]`. `dst_stride` is `rows` for a
/// whole matrix, or the whole matrix's row count for a strip of its rows from `r0` written at
/// `dst[r0..]`.
///
/// # Panics
///
/// If `dst_stride < rows` or either buffer is too short (a bug of the caller).
pub fn transpose_into<T: bytemuck::Pod>(
    src: &[T],
    dst: &mut [T],
    rows: usize,
    cols: usize,
    dst_stride: usize,
) {
    assert!(dst_stride >= rows && src.len() >= rows * cols);
    assert!(rows == 0 || cols == 0 || dst.len() >= (cols - 1) * dst_stride + rows);
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && Isa::detect() == Isa::Avx2 {
        let (src, dst) = (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
        // SAFETY: AVX is available (AVX2 implies it; detected at run time).
        unsafe { avx::transpose_f32(src, dst, rows, cols, dst_stride) };
        return;
    }
    transpose_blocks(src, dst, rows, cols, dst_stride);
}

/// [`transpose_into`] in portable code: 8 x 8 blocks of scalar moves.
fn transpose_blocks<T: bytemuck::Pod>(
    src: &[T],
    dst: &mut [T],
    rows: usize,
    cols: usize,
    dst_stride: usize,
) {
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            // Whole blocks first, then the ragged right and bottom edges element by element.
            let (rb, cb) = (
                r0 + (r1 - r0) / BLOCK * BLOCK,
                c0 + (c1 - c0) / BLOCK * BLOCK,
            );
            for r in (r0..rb).step_by(BLOCK) {
                for c in (c0..cb).step_by(BLOCK) {
                    let mut block = [[T::zeroed(); BLOCK]; BLOCK];
                    for (i, row) in block.iter_mut().enumerate() {
                        let at = (r + i) * cols + c;
                        row.copy_from_slice(&src[at..at + BLOCK]);
                    }
                    for j in 0..BLOCK {
                        let at = (c + j) * dst_stride + r;
                        for (value, row) in dst[at..at + BLOCK].iter_mut().zip(&block) {
                            *value = row[j];
                        }
                    }
                }
            }
            for r in r0..r1 {
                let from = if r < rb { cb } else { c0 };
                for c in from..c1 {
                    dst[c * dst_stride + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// The f32 transpose with AVX: each 8 x 8 block is eight 256-bit loads, 24 shuffles and eight
/// stores (the scalar blocks cost 1.2 to 1.65x a memcpy of the matrix).
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    use super::{BLOCK, TILE};

    /// Writes the transpose of `src` (`rows x cols`) into `dst` (rows `dst_stride` apart), tile
    /// by tile; see [`super::transpose_into`].
    ///
    /// # Safety
    /// The CPU must support AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose_f32(
        src: &[f32],
        dst: &mut [f32],
        rows: usize,
        cols: usize,
        dst_stride: usize,
    ) {
        assert!(dst_stride >= rows && src.len() >= rows * cols);
        assert!(rows == 0 || cols == 0 || dst.len() >= (cols - 1) * dst_stride + rows);
        for r0 in (0..rows).step_by(TILE) {
            let r1 = (r0 + TILE).min(rows);
            let rb = r0 + (r1 - r0) / BLOCK * BLOCK;
            for c0 in (0..cols).step_by(TILE) {
                let c1 = (c0 + TILE).min(cols);
                let cb = c0 + (c1 - c0) / BLOCK * BLOCK;
                for r in (r0..rb).step_by(BLOCK) {
                    for c in (c0..cb).step_by(BLOCK) {
                        // SAFETY: rows r..r + 8 and columns c..c + 8 are inside both matrices
                        // (r + 8 <= rows <= dst_stride, c + 8 <= cols, lengths checked above).
                        unsafe {
                            block(
                                src.as_ptr().add(r * cols + c),
                                cols,
                                dst.as_mut_ptr().add(c * dst_stride + r),
                                dst_stride,
                            )
                        };
                    }
                }
                // The ragged right and bottom edges, element by element.
                for r in r0..r1 {
                    let from = if r < rb { cb } else { c0 };
                    for c in from..c1 {
                        dst[c * dst_stride + r] = src[r * cols + c];
                    }
                }
            }
        }
    }

    /// Transposes the 8 x 8 block at `src` (row stride `src_stride`) into `dst` (row stride
    /// `dst_stride`).
    #[target_feature(enable = "avx")]
    unsafe fn block(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        // SAFETY: the caller guarantees 8 rows of 8 values at both places.
        unsafe {
            let row = |i: usize| _mm256_loadu_ps(src.add(i * src_stride));
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
            let t0 = _mm256_unpacklo_ps(r0, r1);
            let t1 = _mm256_unpackhi_ps(r0, r1);
            let t2 = _mm256_unpacklo_ps(r2, r3);
            let t3 = _mm256_unpackhi_ps(r2, r3);
            let t4 = _mm256_unpacklo_ps(r4, r5);
            let t5 = _mm256_unpackhi_ps(r4, r5);
            let t6 = _mm256_unpacklo_ps(r6, r7);
            let t7 = _mm256_unpackhi_ps(r6, r7);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (j, value) in out.into_iter().enumerate() {
                _mm256_storeu_ps(dst.add(j * dst_stride), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiled transpose (the AVX blocks where the CPU has them, the portable ones) equals the
    /// naive one across tile edges, whole or in strips of rows as the loader reads them.
    #[test]
    fn tiled_transpose_matches_the_naive_one() {
        for (rows, cols) in [
            (1, 1),
            (3, 70),
            (65, 33),
            (32, 32),
            (100, 7),
            (129, 200),
            (64, 8),
        ] {
            let values: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            let expected: Vec<f32> = (0..cols)
                .flat_map(|c| (0..rows).map(move |r| (r, c)))
                .map(|(r, c)| values[r * cols + c])
                .collect();
            let mut whole = vec![0f32; rows * cols];
            transpose_into(&values, &mut whole, rows, cols, rows);
            assert_eq!(whole, expected);
            let mut portable = vec![0f32; rows * cols];
            transpose_blocks(&values, &mut portable, rows, cols, rows);
            assert_eq!(portable, expected);
            // An odd strip height.
            let mut strips = vec![0f32; rows * cols];
            for r0 in (0..rows).step_by(9) {
                let r1 = (r0 + 9).min(rows);
                let strip = &values[r0 * cols..r1 * cols];
                transpose_into(strip, &mut strips[r0..], r1 - r0, cols, rows);
            }
            assert_eq!(strips, expected);
            // Another element type takes the portable blocks.
            let ints: Vec<u16> = (0..rows * cols).map(|i| i as u16).collect();
            let mut out = vec![0u16; rows * cols];
            transpose_into(&ints, &mut out, rows, cols, rows);
            assert!((0..rows * cols).all(|i| out[(i % cols) * rows + i / cols] == ints[i]));
        }
    }
}
