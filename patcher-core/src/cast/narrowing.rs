//! Lossy narrowing: a cast to a dtype of smaller range that turns a finite value into an
//! infinity (overflow) or a normal non-zero value into zero (underflow). Rounding the mantissa
//! is not lossy narrowing (every cast to bf16 rounds); losing the magnitude is.

use half::{bf16, f16};

use super::CastError;
use crate::tensor::DType;

/// Whether a float cast may lose values' magnitudes (see [`HostTensor::cast_with`]).
///
/// [`HostTensor::cast_with`]: crate::HostTensor::cast_with
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LossyNarrowing {
    /// A finite value that would become infinite, or a normal non-zero value that would become
    /// zero, is a [`CastError`](crate::CastError) (the default).
    #[default]
    Refuse,
    /// Values beyond the target's range become infinite and values below its smallest
    /// subnormal become zero, as PyTorch's `Tensor.to(dtype)` does.
    Allow,
}

/// Whether a cast from `from` to `to` can lose magnitudes at all (f16 into bf16 cannot: bf16
/// holds f16's whole range).
fn narrows(from: DType, to: DType) -> bool {
    matches!(
        (from, to),
        (DType::F32 | DType::F64 | DType::BF16, DType::F16)
            | (DType::F32 | DType::F64, DType::BF16)
            | (DType::F64, DType::F32)
    )
}

/// The elements of float bytes, as f64 (exact for every float dtype).
fn values(dtype: DType, bytes: &[u8]) -> impl Iterator<Item = f64> + '_ {
    let size = dtype.size_in_bytes().max(1);
    bytes.chunks_exact(size).map(move |chunk| {
        let mut element = [0u8; 8];
        element[..chunk.len()].copy_from_slice(chunk);
        let bits = u64::from_le_bytes(element);
        match dtype {
            DType::F16 => f64::from(f16::from_bits(bits as u16)),
            DType::BF16 => f64::from(bf16::from_bits(bits as u16)),
            DType::F32 => f64::from(f32::from_bits(bits as u32)),
            DType::F64 => f64::from_bits(bits),
            // Callers pass float dtypes.
            DType::I64 | DType::I32 | DType::U8 | DType::Bool => 0.0,
        }
    })
}

/// The error for the first value of `input` (in `from`) that its cast `output` (in `to`) lost,
/// if any.
pub(super) fn first_lost(from: DType, input: &[u8], to: DType, output: &[u8]) -> Option<CastError> {
    if !narrows(from, to) {
        return None;
    }
    values(from, input)
        .zip(values(to, output))
        .enumerate()
        .find_map(|(index, (value, cast))| {
            if value.is_finite() && cast.is_infinite() {
                Some(CastError::Overflow { index, value, from, to })
            } else if is_normal_in(value, from) && cast == 0.0 {
                Some(CastError::Underflow { index, value, from, to })
            } else {
                None
            }
        })
}

/// Whether `value` is a normal number of `dtype` (its subnormals may flush to zero).
fn is_normal_in(value: f64, dtype: DType) -> bool {
    match dtype {
        DType::F16 => f16::from_f64(value).is_normal(),
        DType::BF16 => bf16::from_f64(value).is_normal(),
        DType::F32 => (value as f32).is_normal(),
        _ => value.is_normal(),
    }
}

/// `value` (an element of `dtype`) as its dtype prints it shortest: `3e38`, not the f64
/// expansion of the f32 nearest to it.
pub(super) fn shown(value: f64, dtype: DType) -> String {
    match dtype {
        DType::F64 => format!("{value:e}"),
        _ => format!("{:e}", value as f32),
    }
}

/// The largest finite value of `dtype`, for messages.
pub(super) fn max_finite(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => f64::from(f16::MAX),
        DType::BF16 => f64::from(bf16::MAX),
        DType::F32 => f64::from(f32::MAX),
        _ => f64::MAX,
    }
}

/// The smallest positive value of `dtype` (its smallest subnormal), for messages.
pub(super) fn min_positive(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => f64::from(f16::from_bits(1)),
        DType::BF16 => f64::from(bf16::from_bits(1)),
        DType::F32 => f64::from(f32::from_bits(1)),
        _ => f64::from_bits(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::HostTensor;

    /// The hostile-input probe's values: beyond f16's range, and below its smallest subnormal.
    const PROBE: [f32; 3] = [1e6, 3e38, 1e-30];

    #[test]
    fn f16_refuses_overflow_and_underflow_naming_the_value() {
        for (index, value) in PROBE.into_iter().enumerate() {
            let mut values = [0.5f32, -2.0, 0.0];
            values[index] = value;
            let err = HostTensor::from_f32([3], &values)
                .cast(DType::F16)
                .unwrap_err();
            let expected = if value > 1.0 {
                CastError::Overflow {
                    index,
                    value: f64::from(value),
                    from: DType::F32,
                    to: DType::F16,
                }
            } else {
                CastError::Underflow {
                    index,
                    value: f64::from(value),
                    from: DType::F32,
                    to: DType::F16,
                }
            };
            assert_eq!(err, expected);
            let message = err.to_string();
            assert!(message.contains(&format!("is {value:e},")), "{message}");
            assert!(message.contains("--allow-lossy"), "{message}");
        }
        // Negative values overflow to -inf the same way.
        let err = HostTensor::from_f32([1], &[-1e6])
            .cast(DType::F16)
            .unwrap_err();
        assert!(matches!(err, CastError::Overflow { index: 0, .. }), "{err}");
        assert!(err.to_string().contains("(6.5504e4)"), "{err}");
    }

    #[test]
    fn allowed_lossy_narrowing_writes_infinity_and_zero() {
        let cast = HostTensor::from_f32([4], &[1e6, 3e38, 1e-30, -1e6])
            .cast_with(DType::F16, LossyNarrowing::Allow)
            .unwrap();
        assert_eq!(
            cast.to_values::<u16>().unwrap(),
            vec![0x7c00, 0x7c00, 0x0000, 0xfc00]
        );
    }

    #[test]
    fn rounding_is_not_lossy_narrowing() {
        // bf16 holds f32's range: the probe's values only round.
        let cast = HostTensor::from_f32([3], &PROBE).cast(DType::BF16).unwrap();
        assert_eq!(
            cast.to_values::<u16>().unwrap(),
            vec![0x4974, 0x7f62, 0x0da2]
        );
        // f16's largest value and smallest subnormal, and a value rounding down to 65504.
        let edge = [65504.0f32, 5.960_464_5e-8, 65519.0, 1.0 / 3.0];
        let cast = HostTensor::from_f32([4], &edge).cast(DType::F16).unwrap();
        assert_eq!(
            cast.to_values::<u16>().unwrap(),
            vec![0x7bff, 0x0001, 0x7bff, 0x3555]
        );
        // Infinities and NaNs are not finite values: they pass.
        let special = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        assert!(HostTensor::from_f32([3], &special).cast(DType::F16).is_ok());
        // An f32 subnormal is not a normal value: it may flush to zero.
        let tiny = HostTensor::from_f32([1], &[1e-40])
            .cast(DType::F16)
            .unwrap();
        assert_eq!(tiny.to_values::<u16>().unwrap(), vec![0]);
    }

    #[test]
    fn every_narrowing_pair_is_checked() {
        let f64s = HostTensor::from_values(DType::F64, [2], &[1.0f64, 1e300]);
        assert!(matches!(
            f64s.clone().cast(DType::F32),
            Err(CastError::Overflow { index: 1, .. })
        ));
        assert!(matches!(
            f64s.cast(DType::BF16),
            Err(CastError::Overflow { index: 1, .. })
        ));
        let tiny = HostTensor::from_values(DType::F64, [1], &[1e-300f64]);
        assert!(matches!(
            tiny.cast(DType::F32),
            Err(CastError::Underflow { index: 0, .. })
        ));
        // f32::MAX rounds up past bf16's largest value.
        let max = HostTensor::from_f32([1], &[f32::MAX]);
        assert!(matches!(
            max.cast(DType::BF16),
            Err(CastError::Overflow { .. })
        ));
        // bf16 -> f16 narrows; f16 -> bf16 and widenings never lose magnitudes.
        let big = HostTensor::from_f32([1], &[1e30])
            .cast(DType::BF16)
            .unwrap();
        assert!(matches!(
            big.clone().cast(DType::F16),
            Err(CastError::Overflow { .. })
        ));
        assert!(big.cast(DType::F64).is_ok());
        let f16_min = HostTensor::from_values(DType::F16, [1], &[0x0001u16]);
        assert!(f16_min.cast(DType::BF16).is_ok());
    }
}
