//! The opt-in check for NaN and infinite weights ([`LoadOptions::check_finite`]): counts them
//! per checkpoint tensor on the host bytes, in the loader's threads, as each tensor is read.
//!
//! [`LoadOptions::check_finite`]: super::LoadOptions::check_finite

use patcher_core::{DType, HostTensor};

/// How many NaN and infinite values a checkpoint tensor holds (only tensors with some are
/// listed in [`Loaded::non_finite`](super::Loaded::non_finite)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NonFiniteCount {
    /// The checkpoint key.
    pub key: String,
    /// NaN values.
    pub nan: u64,
    /// Infinite values (either sign).
    pub inf: u64,
}

/// `(NaN, infinite)` counts of a float tensor's little-endian values; `(0, 0)` for integer and
/// bool tensors. Reads the exponent bits only, so it costs one pass at memory speed.
pub(crate) fn count_non_finite(tensor: &HostTensor<'_>) -> (u64, u64) {
    let bytes = &tensor.bytes[..];
    match tensor.dtype {
        DType::F32 => count::<4>(bytes, |b| {
            let bits = u32::from_le_bytes(b);
            (bits & 0x7f80_0000 == 0x7f80_0000, bits & 0x007f_ffff != 0)
        }),
        DType::F64 => count::<8>(bytes, |b| {
            let bits = u64::from_le_bytes(b);
            (
                bits & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000,
                bits & 0x000f_ffff_ffff_ffff != 0,
            )
        }),
        DType::F16 => count::<2>(bytes, |b| {
            let bits = u16::from_le_bytes(b);
            (bits & 0x7c00 == 0x7c00, bits & 0x03ff != 0)
        }),
        DType::BF16 => count::<2>(bytes, |b| {
            let bits = u16::from_le_bytes(b);
            (bits & 0x7f80 == 0x7f80, bits & 0x007f != 0)
        }),
        _ => (0, 0),
    }
}

/// Counts values whose exponent is all ones: NaN if the mantissa is non-zero, else infinite.
fn count<const N: usize>(bytes: &[u8], classify: impl Fn([u8; N]) -> (bool, bool)) -> (u64, u64) {
    // Branch-free, so the loop vectorises.
    let (mut nan, mut inf) = (0u64, 0u64);
    for chunk in bytes.chunks_exact(N) {
        let mut value = [0u8; N];
        value.copy_from_slice(chunk);
        let (special, mantissa) = classify(value);
        nan += u64::from(special & mantissa);
        inf += u64::from(special & !mantissa);
    }
    (nan, inf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_float_dtype() {
        let values = [1.0, f32::NAN, f32::INFINITY, -f32::INFINITY, 0.0, -f32::NAN];
        let f32s = HostTensor::from_f32([6], &values);
        assert_eq!(count_non_finite(&f32s), (2, 2));
        for dtype in [DType::F16, DType::BF16, DType::F64] {
            let cast = f32s.clone().cast(dtype).unwrap();
            assert_eq!(count_non_finite(&cast), (2, 2), "{dtype}");
        }
        let finite = HostTensor::from_f32([2], &[f32::MAX, f32::MIN_POSITIVE]);
        assert_eq!(count_non_finite(&finite), (0, 0));
    }
}
