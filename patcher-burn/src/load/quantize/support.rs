//! Which quantization schemes a load applies, decided from the scheme, the parameter's shape
//! and the backend's own report, before any parameter is uploaded: Burn 0.21's backends panic
//! (or compute wrong values) on the schemes they do not implement, so nothing is tried.
//!
//! What Burn 0.21 does with each part of a [`QuantScheme`] (read in burn-ndarray, burn-flex,
//! burn-cubecl and cubek-quant):
//! - values: NdArray quantizes Q8F/Q8S only; Flex rounds every value as an integer (so e4m3,
//!   e5m2 and e2m1 come out wrong); CubeCL needs hardware fp8/fp4 types for the float formats,
//!   and `TensorData` cannot read them back. Integer values (`Q8*`, `Q4*`, `Q2*`) only.
//! - stores: `Native` holds one value per byte (8-bit values only), `PackedNative` is e2m1's,
//!   `PackedU32(d)` packs along the innermost dimension only (`d = 0`; Burn's data reader
//!   asserts it), and needs widths that fill whole words. NdArray has no packed store.
//! - levels: blocks are contiguous runs of the last dimension (Burn reshapes the tensor to
//!   `[numel / block, block]` and the scales to the shape divided by the block), so a block
//!   must divide the width and only the last block dimension may exceed 1; GPU kernels quantize
//!   whole vectors (4 f32 values, or a u32 word's values) of one block.
//! - scale precision: F32 only; the CPU backends keep f32 scales whatever the scheme says, and
//!   the GPU kernels computed 4-bit values wrongly with F16 scales.

use burn::prelude::*;
use burn::tensor::backend::DTypeUsage;
use burn::tensor::quantization::{
    QTensorPrimitive, QuantLevel, QuantMode, QuantParam, QuantScheme, QuantStore, QuantValue,
};
use burn::tensor::DType;

/// Bytes a GPU kernel loads at once (128-bit vectors): a block of the native store must hold
/// whole vectors of the float type.
const VECTOR_BYTES: usize = 16;

/// Why a parameter cannot be quantized with a scheme (see
/// [`LoadError::Quantize`](crate::LoadError::Quantize)). Every variant says what to choose
/// instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// A floating-point value format (e4m3, e5m2, e2m1).
    #[error(
        "QuantValue::{value:?} is a floating-point format, which Burn 0.21's backends do not \
         quantize correctly (NdArray: not at all; Flex: rounded as integers; CubeCL: only with \
         hardware fp8/fp4 types, and not readable back); choose an integer value (Q8S, Q8F, \
         Q4S, Q4F, Q2S, Q2F)"
    )]
    FloatValue {
        /// The value format.
        value: QuantValue,
    },
    /// A sub-byte value in the one-value-per-byte store.
    #[error(
        "QuantStore::Native holds one value per byte, and QuantValue::{value:?} has {bits} \
         bits; pack it with QuantStore::PackedU32(0), or choose an 8-bit value (Q8S, Q8F)"
    )]
    SubByteNative {
        /// The value format.
        value: QuantValue,
        /// Its bits.
        bits: usize,
    },
    /// `QuantStore::PackedNative`, e2m1's packed format.
    #[error(
        "QuantStore::PackedNative({dim}) is the packed e2m1 format only; store \
         QuantValue::{value:?} with QuantStore::Native (8-bit values) or QuantStore::PackedU32(0)"
    )]
    PackedNative {
        /// The packing dimension asked for.
        dim: usize,
        /// The value format.
        value: QuantValue,
    },
    /// Packing along another dimension than the innermost.
    #[error(
        "QuantStore::PackedU32({dim}): Burn packs values along the innermost dimension only; \
         use QuantStore::PackedU32(0)"
    )]
    PackingDim {
        /// The packing dimension asked for.
        dim: usize,
    },
    /// Scales in another precision than f32.
    #[error(
        "QuantParam::{param:?} scales: Burn 0.21's CPU backends keep scales in f32 whatever the \
         scheme says, and its GPU kernels mis-scale sub-byte values with 16-bit scales (4-bit \
         logits 4% off on lavapipe), so the same scheme would give different models; choose \
         QuantParam::F32"
    )]
    ScaleParam {
        /// The scale precision.
        param: QuantParam,
    },
    /// A block level with no dimensions.
    #[error(
        "QuantLevel::Block with no dimensions; give a block size, e.g. QuantLevel::block([32])"
    )]
    EmptyBlock,
    /// A block with a zero dimension, or a multi-dimensional tile.
    #[error(
        "QuantLevel::Block({block:?}): Burn quantizes blocks as contiguous runs of the last \
         dimension, so every block dimension but the last must be 1 and none may be 0; use \
         QuantLevel::block([{last}])"
    )]
    BlockShape {
        /// The block's dimensions.
        block: Vec<u8>,
        /// Its last dimension.
        last: u8,
    },
    /// A block of more dimensions than the parameter.
    #[error(
        "QuantLevel::Block({block:?}) has {} dimensions and the parameter (shape {shape:?}) \
         {}; give at most as many block dimensions as it has",
        block.len(),
        shape.len()
    )]
    BlockRank {
        /// The block's dimensions.
        block: Vec<u8>,
        /// The parameter's shape in Burn's layout.
        shape: Vec<usize>,
    },
    /// A block size that does not divide the parameter's width.
    #[error(
        "its width {width} (the last dimension of {shape:?}, in Burn's layout) is not a \
         multiple of the block size {block} of QuantLevel::Block({block_dims:?}); choose a block \
         size that divides it, or quantize only matching parameters with \
         QuantizeTargets::Matching"
    )]
    BlockWidth {
        /// The parameter's last dimension.
        width: usize,
        /// The parameter's shape in Burn's layout.
        shape: Vec<usize>,
        /// The block's last dimension.
        block: usize,
        /// The block's dimensions.
        block_dims: Vec<u8>,
    },
    /// A block size that does not hold whole vectors (native store) or words (packed store).
    #[error(
        "the block size {block} is not a multiple of {lanes}, the values Burn's GPU kernels \
         quantize at once with this store and float type (required on every backend so a scheme \
         loads the same everywhere); choose a block size that is a multiple of {lanes}"
    )]
    BlockLanes {
        /// The block's last dimension.
        block: usize,
        /// The values quantized at once.
        lanes: usize,
    },
    /// A width that does not fill whole u32 words.
    #[error(
        "its width {width} (the last dimension of {shape:?}, in Burn's layout) is not a \
         multiple of {per_word}, the QuantValue::{value:?} values a QuantStore::PackedU32 word \
         holds; choose QuantStore::Native with an 8-bit value, or quantize only matching \
         parameters with QuantizeTargets::Matching"
    )]
    PackedWidth {
        /// The parameter's last dimension.
        width: usize,
        /// The parameter's shape in Burn's layout.
        shape: Vec<usize>,
        /// Values per u32 word.
        per_word: usize,
        /// The value format.
        value: QuantValue,
    },
    /// A scheme the backend reports it does not implement.
    #[error(
        "the {backend} backend does not implement {scheme:?}; choose a scheme it does \
         (`patcher_burn::backend_quant_scheme::<B>()` is its 8-bit default: NdArray and Flex \
         take QuantStore::Native, the GPU backends QuantStore::PackedU32(0))"
    )]
    Backend {
        /// The backend's name.
        backend: String,
        /// The scheme.
        scheme: QuantScheme,
    },
}

/// The backend's own 8-bit scheme: 8-bit symmetric values per tensor, in the store the backend
/// implements (`QuantStore::Native` on NdArray and Flex, `QuantStore::PackedU32(0)` on the GPU
/// backends). Burn's `QuantScheme::default()` is the packed one, which NdArray does not
/// implement.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::quantization::{QuantScheme, QuantStore};
///
/// let scheme = patcher_burn::backend_quant_scheme::<NdArray>();
/// assert_eq!(scheme, QuantScheme::default().with_store(QuantStore::Native));
/// ```
pub fn backend_quant_scheme<B: Backend>() -> QuantScheme {
    <B::QuantizedTensorPrimitive as QTensorPrimitive>::default_scheme()
}

/// Whether `scheme` can quantize a parameter of `shape` (Burn's layout) held in floats of
/// `float_bytes` bytes on `B`: the scheme's parts first, then the backend's report on the
/// scheme (asked only once the scheme is one whose storage type Burn can name: CubeCL's
/// report panics on sub-byte native stores), then the shape.
pub(crate) fn check<B: Backend>(
    scheme: &QuantScheme,
    shape: &[usize],
    float_bytes: usize,
    device: &B::Device,
) -> Result<(), QuantizeError> {
    check_scheme_on::<B>(scheme, device)?;
    check_shape(scheme, shape, float_bytes)
}

/// The part of [`check`] that does not depend on a parameter.
pub(crate) fn check_scheme_on<B: Backend>(
    scheme: &QuantScheme,
    device: &B::Device,
) -> Result<(), QuantizeError> {
    check_scheme(scheme)?;
    check_backend::<B>(scheme, device)
}

/// The scheme's parts on their own.
fn check_scheme(scheme: &QuantScheme) -> Result<(), QuantizeError> {
    let QuantScheme { value, param, store, level, mode } = *scheme;
    // Exhaustive on purpose: a mode or value a later Burn adds must be decided here.
    match mode {
        QuantMode::Symmetric => {}
    }
    match value {
        QuantValue::E4M3 | QuantValue::E5M2 | QuantValue::E2M1 => {
            return Err(QuantizeError::FloatValue { value })
        }
        QuantValue::Q8F
        | QuantValue::Q8S
        | QuantValue::Q4F
        | QuantValue::Q4S
        | QuantValue::Q2F
        | QuantValue::Q2S => {}
    }
    match store {
        QuantStore::Native if value.size_bits() < 8 => {
            return Err(QuantizeError::SubByteNative { value, bits: value.size_bits() })
        }
        QuantStore::Native | QuantStore::PackedU32(0) => {}
        QuantStore::PackedNative(dim) => return Err(QuantizeError::PackedNative { dim, value }),
        QuantStore::PackedU32(dim) => return Err(QuantizeError::PackingDim { dim }),
    }
    match param {
        QuantParam::F32 => {}
        QuantParam::F16 | QuantParam::BF16 | QuantParam::UE8M0 | QuantParam::UE4M3 => {
            return Err(QuantizeError::ScaleParam { param })
        }
    }
    if let QuantLevel::Block(block) = level {
        let Some((&last, leading)) = block.as_slice().split_last() else {
            return Err(QuantizeError::EmptyBlock);
        };
        if last == 0 || leading.iter().any(|&d| d != 1) {
            return Err(QuantizeError::BlockShape { block: block.to_vec(), last: last.max(1) });
        }
    }
    Ok(())
}

/// The backend's report on the scheme.
fn check_backend<B: Backend>(
    scheme: &QuantScheme,
    device: &B::Device,
) -> Result<(), QuantizeError> {
    let usage = B::dtype_usage(device, DType::QFloat(*scheme));
    if usage.contains(DTypeUsage::Storage) {
        Ok(())
    } else {
        Err(QuantizeError::Backend { backend: B::name(device), scheme: *scheme })
    }
}

/// The parameter's shape against the store's words and the level's blocks.
fn check_shape(
    scheme: &QuantScheme,
    shape: &[usize],
    float_bytes: usize,
) -> Result<(), QuantizeError> {
    let width = shape.last().copied().unwrap_or(1);
    let per_word = 32 / scheme.value.size_bits();
    let packed = matches!(scheme.store, QuantStore::PackedU32(_));
    if packed && width % per_word != 0 {
        return Err(QuantizeError::PackedWidth {
            width,
            shape: shape.to_vec(),
            per_word,
            value: scheme.value,
        });
    }
    let QuantLevel::Block(block_dims) = scheme.level else {
        return Ok(());
    };
    if block_dims.len() > shape.len() {
        return Err(QuantizeError::BlockRank { block: block_dims.to_vec(), shape: shape.to_vec() });
    }
    // `check_scheme` made sure the block has a last dimension.
    let block = block_dims.last().copied().map_or(1, usize::from);
    if width % block != 0 {
        return Err(QuantizeError::BlockWidth {
            width,
            shape: shape.to_vec(),
            block,
            block_dims: block_dims.to_vec(),
        });
    }
    let lanes = if packed {
        per_word
    } else {
        (VECTOR_BYTES / float_bytes.max(1)).max(1)
    };
    if block % lanes != 0 {
        return Err(QuantizeError::BlockLanes { block, lanes });
    }
    Ok(())
}
