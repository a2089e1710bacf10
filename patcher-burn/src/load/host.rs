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
use patcher_kernels::transpose_into;

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

/// The row-major `rows x cols` matrix of little-endian values in `bytes` (any alignment),
/// transposed to `cols x rows` in one copy ([`transpose_into`]: tile by tile, so that reads and
/// writes both stay in cache).
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

    /// The transposed copy of checkpoint bytes is the kernel's transpose, whatever the bytes'
    /// alignment (the kernel itself is tested in `patcher-kernels`).
    #[test]
    fn transposed_copy_is_the_kernels_transpose_at_any_alignment() {
        for [rows, cols] in [[1, 1], [65, 33], [129, 200]] {
            let values: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.25 - 7.0).collect();
            let mut want = vec![0f32; rows * cols];
            transpose_into(&values, &mut want, rows, cols, rows);
            let bytes: &[u8] = bytemuck::cast_slice(&values);
            assert_eq!(transposed::<f32>(bytes, rows, cols), want);
            // One byte off: the unaligned path.
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(bytes);
            assert_eq!(transposed::<f32>(&shifted[1..], rows, cols), want);
        }
    }
}
