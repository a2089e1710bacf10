//! Host tensors to Burn's `TensorData` and back, with the layout step (Linear weights
//! transposed) and the dtype the backend stores.

use std::borrow::Cow;

use burn::tensor::backend::Backend;
use burn::tensor::{DType as BurnDType, Element, TensorData};
use patcher_core::ops::Transpose;
use patcher_core::{ConversionOp, DType, Groups, HostTensor, LossyNarrowing, OpContext};

use super::error::LoadError;
use super::layout::Layout;
use super::params::{LinearLayout, ParamInfo, ParamKind};
use crate::save::SaveError;

/// The checkpoint dtype of the backend's float type.
pub(crate) fn float_dtype<B: Backend>() -> Result<DType, LoadError> {
    match B::FloatElem::dtype() {
        BurnDType::F32 | BurnDType::Flex32 => Ok(DType::F32),
        BurnDType::F16 => Ok(DType::F16),
        BurnDType::BF16 => Ok(DType::BF16),
        BurnDType::F64 => Ok(DType::F64),
        other => Err(LoadError::Unsupported {
            key: String::new(),
            message: format!("the backend's float type {other:?} is not a float dtype"),
        }),
    }
}

/// Casts a checkpoint tensor to what parameter `param` stores: floats to `float`, integers to
/// i64. Keeps the borrow when nothing changes.
pub(crate) fn cast_for<'a>(
    tensor: HostTensor<'a>,
    key: &str,
    kind: ParamKind,
    float: DType,
) -> Result<HostTensor<'a>, LoadError> {
    let wrong_kind = |what: &str| LoadError::Unsupported {
        key: key.to_string(),
        message: format!(
            "the checkpoint stores {} but the parameter is {what}; map it to a parameter of the \
             same kind or drop it with a WeightRenaming to a name the model does not have",
            tensor.dtype
        ),
    };
    match (kind, tensor.dtype) {
        // Into the backend's float type as transformers' `torch_dtype` casts: values beyond its
        // range become infinite, as with torch's `Tensor.to` (the model runs in that type).
        (ParamKind::Float, d) if d.is_float() => tensor
            .cast_with(float, LossyNarrowing::Allow)
            .map_err(|source| LoadError::Cast { key: key.to_string(), source }),
        (ParamKind::Float, _) => Err(wrong_kind("a float tensor")),
        (ParamKind::Int, DType::I64 | DType::I32 | DType::U8) => Ok(tensor),
        (ParamKind::Int, _) => Err(wrong_kind("an int tensor")),
        (ParamKind::Bool, DType::Bool | DType::U8) => Ok(tensor),
        (ParamKind::Bool, _) => Err(wrong_kind("a bool tensor")),
    }
}

/// Swaps the two dimensions of a 2-D tensor (the PyTorch/Burn Linear layout step).
fn transpose(tensor: HostTensor<'_>, key: &str) -> Result<HostTensor<'static>, SaveError> {
    let patterns = [key.to_string()];
    let ctx = OpContext {
        source_patterns: &patterns,
        target_patterns: &patterns,
        target_key: key,
    };
    let op = Transpose::new(0, 1);
    let mut out = op
        .convert(Groups::new().with(key, vec![tensor]), &ctx)
        .map_err(|source| SaveError::Conversion { key: key.to_string(), source })?;
    let tensor = out
        .take(key)
        .and_then(|mut v| v.pop())
        .ok_or_else(|| SaveError::Unsupported {
            key: key.to_string(),
            message: "the layout transpose gave no tensor".into(),
        })?;
    Ok(tensor.into_owned())
}

/// A converted checkpoint tensor as Burn data for `param`, copied once into a buffer of the
/// element type.
///
/// A [`Layout::Transposed`] float parameter (a Linear weight) is laid out as `layout` says:
/// [`LinearLayout::Contiguous`] transposes it during that one copy (in cache-sized tiles) and
/// returns [`Layout::Same`]; [`LinearLayout::TransposedView`] keeps the checkpoint's `[out, in]`
/// order and returns [`Layout::Transposed`], the view being taken when the tensor is put in the
/// model (`Applier`). The returned layout is the step still to apply.
///
/// The values go into a `Vec` of the element type: Burn's backends take such a buffer as it is,
/// where a byte buffer (alignment 1) would be copied twice more on the way in.
pub(crate) fn to_tensor_data(
    tensor: HostTensor<'_>,
    param: &ParamInfo,
    layout: LinearLayout,
) -> Result<(TensorData, Layout), LoadError> {
    let shape = tensor.shape.clone();
    let bytes = &tensor.bytes[..];
    if transposes(param, layout, &shape) {
        let (rows, cols) = (shape[0], shape[1]);
        let burn_shape = vec![cols, rows];
        let data = match tensor.dtype {
            DType::F32 => TensorData::new(transposed::<f32>(bytes, rows, cols), burn_shape),
            DType::F16 => TensorData::new(transposed::<half::f16>(bytes, rows, cols), burn_shape),
            DType::BF16 => TensorData::new(transposed::<half::bf16>(bytes, rows, cols), burn_shape),
            DType::F64 => TensorData::new(transposed::<f64>(bytes, rows, cols), burn_shape),
            other => {
                return Err(LoadError::Unsupported {
                    key: param.torch_name.clone(),
                    message: format!("a float parameter cannot hold {other} values"),
                })
            }
        };
        return Ok((data, Layout::Same));
    }
    let data = match (param.kind, tensor.dtype) {
        (ParamKind::Float, DType::F32) => TensorData::new(aligned::<f32>(bytes), shape),
        (ParamKind::Float, DType::F16) => TensorData::new(aligned::<half::f16>(bytes), shape),
        (ParamKind::Float, DType::BF16) => TensorData::new(aligned::<half::bf16>(bytes), shape),
        (ParamKind::Float, DType::F64) => TensorData::new(aligned::<f64>(bytes), shape),
        (ParamKind::Float, other) => {
            return Err(LoadError::Unsupported {
                key: param.torch_name.clone(),
                message: format!("a float parameter cannot hold {other} values"),
            })
        }
        (ParamKind::Int, DType::I64) => TensorData::new(aligned::<i64>(bytes), shape),
        (ParamKind::Int, DType::I32) => TensorData::new(aligned::<i32>(bytes), shape),
        (ParamKind::Int, _) => TensorData::new(bytes.iter().map(|&b| b as i64).collect(), shape),
        (ParamKind::Bool, _) => TensorData::new(bytes.iter().map(|&b| b != 0).collect(), shape),
    };
    Ok((data, param.layout))
}

/// Whether a tensor of `shape` for `param` is transposed while it is copied: a 2-D float
/// parameter of [`Layout::Transposed`] (a Linear weight) under [`LinearLayout::Contiguous`].
pub(crate) fn transposes(param: &ParamInfo, layout: LinearLayout, shape: &[usize]) -> bool {
    param.layout == Layout::Transposed
        && layout == LinearLayout::Contiguous
        && param.kind == ParamKind::Float
        && shape.len() == 2
}

/// The little-endian values in `bytes` (any alignment) as a `Vec<T>`, written once (the
/// zeroed allocation of a large buffer costs no write).
fn aligned<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    bytemuck::pod_collect_to_vec(bytes)
}

/// Side of the square tiles of [`transposed`]: a tile of f32 is 16 KiB read and 16 KiB written,
/// both in L1/L2.
const TILE: usize = 64;
/// Side of the blocks a tile is copied in: 8 contiguous values read from each of 8 rows, then
/// written as 8 contiguous values to each of 8 output rows (the compiler turns the block into
/// vector shuffles).
const BLOCK: usize = 8;

/// The row-major `rows x cols` matrix of little-endian values in `bytes` (any alignment),
/// transposed to `cols x rows` in one copy, tile by tile, so that reads and writes both stay in
/// cache.
fn transposed<T: bytemuck::Pod>(bytes: &[u8], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::zeroed(); rows * cols];
    match bytemuck::try_cast_slice::<u8, T>(bytes) {
        Ok(values) => transpose_into(values, &mut out, rows, cols, rows),
        // A borrowed buffer that is not aligned for `T` (rare: safetensors aligns tensor data).
        Err(_) => {
            let values: Vec<T> = bytemuck::pod_collect_to_vec(bytes);
            transpose_into(&values, &mut out, rows, cols, rows);
        }
    }
    out
}

/// Writes the transpose of `src` (`rows x cols`) into `dst`, whose rows are `dst_stride`
/// values apart: `dst[c * dst_stride + r] = src[r * cols + c]`. `dst_stride` is `rows` for a
/// whole matrix, or the whole matrix's row count for a strip of its rows from `r0` written at
/// `dst[r0..]`.
///
/// # Panics
///
/// If `dst_stride < rows` or either buffer is too short (a bug of the caller).
pub(crate) fn transpose_into<T: bytemuck::Pod>(
    src: &[T],
    dst: &mut [T],
    rows: usize,
    cols: usize,
    dst_stride: usize,
) {
    assert!(dst_stride >= rows && src.len() >= rows * cols);
    assert!(rows == 0 || cols == 0 || dst.len() >= (cols - 1) * dst_stride + rows);
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && std::arch::is_x86_feature_detected!("avx")
    {
        let (src, dst) = (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
        // SAFETY: AVX is available (checked above).
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

/// A parameter's Burn data as a host tensor in the checkpoint (PyTorch) layout, for saving.
pub(crate) fn from_tensor_data(
    data: TensorData,
    param: &ParamInfo,
) -> Result<HostTensor<'static>, SaveError> {
    let unsupported = |dtype: BurnDType| SaveError::Unsupported {
        key: param.burn_path.clone(),
        message: format!("cannot save a parameter of dtype {dtype:?} to safetensors"),
    };
    let (dtype, bytes) = match data.dtype {
        BurnDType::F32 | BurnDType::Flex32 => (DType::F32, data.into_bytes().to_vec()),
        BurnDType::F16 => (DType::F16, data.into_bytes().to_vec()),
        BurnDType::BF16 => (DType::BF16, data.into_bytes().to_vec()),
        BurnDType::F64 => (DType::F64, data.into_bytes().to_vec()),
        // Integer buffers are saved as PyTorch's integer type, whatever width the backend uses
        // (wgpu stores i32), so the file matches the checkpoint it came from.
        BurnDType::I64 | BurnDType::I32 | BurnDType::I16 | BurnDType::I8 => {
            let values: Vec<i64> = data.iter::<i64>().collect();
            (DType::I64, bytemuck::cast_slice(&values).to_vec())
        }
        BurnDType::U8 => (DType::U8, data.into_bytes().to_vec()),
        BurnDType::Bool(_) => {
            let values = data.iter::<bool>().map(u8::from).collect();
            (DType::Bool, values)
        }
        BurnDType::QFloat(_) => {
            return Err(SaveError::Unsupported {
                key: param.burn_path.clone(),
                message: "the parameter is quantized, and safetensors checkpoints hold full \
                          precision: save the model loaded without `LoadOptions::quantize` (or \
                          dequantize its parameters first)"
                    .into(),
            })
        }
        other => return Err(unsupported(other)),
    };
    let tensor = HostTensor::new(dtype, param.burn_shape.clone(), Cow::Owned(bytes));
    match param.layout {
        Layout::Same => Ok(tensor),
        Layout::Transposed => transpose(tensor, &param.burn_path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiled transpose equals the naive one, across tile edges, aligned or not.
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
            let bytes: &[u8] = bytemuck::cast_slice(&values);
            assert_eq!(transposed::<f32>(bytes, rows, cols), expected);
            // One byte off: the unaligned path.
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(bytes);
            assert_eq!(transposed::<f32>(&shifted[1..], rows, cols), expected);
            // The portable blocks (the AVX kernel above, where the CPU has AVX).
            let mut portable = vec![0f32; rows * cols];
            transpose_blocks(&values, &mut portable, rows, cols, rows);
            assert_eq!(portable, expected);
            // In strips of rows, as the loader reads them (an odd strip height).
            let mut strips = vec![0f32; rows * cols];
            for r0 in (0..rows).step_by(9) {
                let r1 = (r0 + 9).min(rows);
                let strip = &values[r0 * cols..r1 * cols];
                transpose_into(strip, &mut strips[r0..], r1 - r0, cols, rows);
            }
            assert_eq!(strips, expected);
        }
    }
}
