//! Host tensors to Burn's `TensorData` and back, with the layout step (Linear weights
//! transposed) and the dtype the backend stores.

use std::borrow::Cow;

use burn::tensor::backend::Backend;
use burn::tensor::{DType as BurnDType, Element, TensorData};
use patcher_core::ops::Transpose;
use patcher_core::{ConversionOp, DType, Groups, HostTensor, OpContext};

use super::error::LoadError;
use super::params::{Layout, ParamInfo, ParamKind};

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
        (ParamKind::Float, d) if d.is_float() => {
            tensor.cast(float).map_err(|source| LoadError::Cast {
                key: key.to_string(),
                source,
            })
        }
        (ParamKind::Float, _) => Err(wrong_kind("a float tensor")),
        (ParamKind::Int, DType::I64 | DType::I32 | DType::U8) => Ok(tensor),
        (ParamKind::Int, _) => Err(wrong_kind("an int tensor")),
        (ParamKind::Bool, DType::Bool | DType::U8) => Ok(tensor),
        (ParamKind::Bool, _) => Err(wrong_kind("a bool tensor")),
    }
}

/// Swaps the two dimensions of a 2-D tensor (the PyTorch/Burn Linear layout step).
fn transpose(tensor: HostTensor<'_>, key: &str) -> Result<HostTensor<'static>, LoadError> {
    let patterns = [key.to_string()];
    let ctx = OpContext {
        source_patterns: &patterns,
        target_patterns: &patterns,
        target_key: key,
    };
    let op = Transpose::new(0, 1);
    let mut out = op
        .convert(Groups::new().with(key, vec![tensor]), &ctx)
        .map_err(|source| LoadError::Conversion {
            key: key.to_string(),
            source,
        })?;
    let tensor = out
        .take(key)
        .and_then(|mut v| v.pop())
        .ok_or_else(|| LoadError::Unsupported {
            key: key.to_string(),
            message: "the layout transpose gave no tensor".into(),
        })?;
    Ok(tensor.into_owned())
}

/// A converted checkpoint tensor as Burn data for `param` (PyTorch layout in, Burn layout out).
pub(crate) fn to_tensor_data(
    tensor: HostTensor<'_>,
    param: &ParamInfo,
) -> Result<TensorData, LoadError> {
    let tensor = match param.layout {
        Layout::Same => tensor,
        Layout::Transposed => transpose(tensor, &param.torch_name)?,
    };
    let shape = param.burn_shape.clone();
    Ok(match (param.kind, tensor.dtype) {
        (ParamKind::Float, dtype) => {
            TensorData::from_bytes_vec(tensor.bytes.into_owned(), shape, burn_float(dtype))
        }
        (ParamKind::Int, DType::I64) => TensorData::new(values::<i64>(&tensor), shape),
        (ParamKind::Int, DType::I32) => TensorData::new(values::<i32>(&tensor), shape),
        (ParamKind::Int, _) => {
            TensorData::new(tensor.bytes.iter().map(|&b| b as i64).collect(), shape)
        }
        (ParamKind::Bool, _) => {
            TensorData::new(tensor.bytes.iter().map(|&b| b != 0).collect(), shape)
        }
    })
}

fn values<T: bytemuck::Pod>(tensor: &HostTensor<'_>) -> Vec<T> {
    tensor
        .bytes
        .chunks_exact(std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
        .collect()
}

fn burn_float(dtype: DType) -> BurnDType {
    match dtype {
        DType::F16 => BurnDType::F16,
        DType::BF16 => BurnDType::BF16,
        DType::F64 => BurnDType::F64,
        _ => BurnDType::F32,
    }
}

/// A parameter's Burn data as a host tensor in the checkpoint (PyTorch) layout, for saving.
pub(crate) fn from_tensor_data(
    data: TensorData,
    param: &ParamInfo,
) -> Result<HostTensor<'static>, LoadError> {
    let unsupported = |dtype: BurnDType| LoadError::Unsupported {
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
        other => return Err(unsupported(other)),
    };
    let tensor = HostTensor::new(dtype, param.burn_shape.clone(), Cow::Owned(bytes));
    match param.layout {
        Layout::Same => Ok(tensor),
        Layout::Transposed => transpose(tensor, &param.burn_path),
    }
}
