//! NaN payloads kept bit for bit across float casts.
//!
//! `half`'s conversions and the CPU's own `f32`/`f64` conversions quiet NaNs (they set the
//! quiet bit), so a signalling NaN comes back quiet and a checkpoint's NaN bytes change on a
//! round trip. NaNs are converted here on their bits instead: sign kept, exponent all ones,
//! mantissa (the quiet bit and the payload) aligned at its top bit. Widening is exact and
//! narrowing it back gives the original bits; narrowing keeps the payload's top bits.

use crate::tensor::DType;

/// Width and mantissa bits of a float dtype.
fn format(dtype: DType) -> Option<(u32, u32)> {
    match dtype {
        DType::F16 => Some((16, 10)),
        DType::BF16 => Some((16, 7)),
        DType::F32 => Some((32, 23)),
        DType::F64 => Some((64, 52)),
        DType::I64 | DType::I32 | DType::U8 | DType::Bool => None,
    }
}

/// `bits` (an element of `from`, in the low bits) converted to `to` if it is a NaN; `None` for
/// every other value (and non-float dtypes), which the callers convert with `half`'s fast
/// paths.
pub(super) fn convert(bits: u64, from: DType, to: DType) -> Option<u64> {
    let ((from_width, from_mantissa), (to_width, to_mantissa)) = (format(from)?, format(to)?);
    let mantissa_mask = (1u64 << from_mantissa) - 1;
    let exponent_mask = ((1u64 << (from_width - 1 - from_mantissa)) - 1) << from_mantissa;
    let mantissa = bits & mantissa_mask;
    if bits & exponent_mask != exponent_mask || mantissa == 0 {
        return None;
    }
    let sign = (bits >> (from_width - 1)) & 1;
    let mantissa = if from_mantissa >= to_mantissa {
        mantissa >> (from_mantissa - to_mantissa)
    } else {
        mantissa << (to_mantissa - from_mantissa)
    };
    // A payload held only in bits the target lacks would read as infinity: keep a NaN of the
    // same kind (its quiet bit, the mantissa's top bit, was 0 and stays 0).
    let mantissa = mantissa.max(1);
    let exponent = ((1u64 << (to_width - 1 - to_mantissa)) - 1) << to_mantissa;
    Some(sign << (to_width - 1) | exponent | mantissa)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::HostTensor;

    /// f16 NaNs: quiet and signalling, several payloads, either sign.
    const F16_NANS: [u16; 6] = [0x7e00, 0x7c01, 0x7d55, 0xfc01, 0xfe3f, 0x7fff];
    /// bf16 NaNs: quiet and signalling, several payloads, either sign.
    const BF16_NANS: [u16; 6] = [0x7fc0, 0x7f81, 0x7faa, 0xff81, 0xffc5, 0x7fff];

    fn round_trip(dtype: DType, nans: &[u16]) {
        for wide in [DType::F32, DType::F64] {
            let t = HostTensor::from_values(dtype, [nans.len()], nans);
            let widened = t.cast(wide).unwrap();
            let back = widened.clone().cast(dtype).unwrap();
            assert_eq!(
                back.to_values::<u16>().unwrap(),
                nans,
                "{dtype} -> {wide} -> {dtype}"
            );
            // The widened NaNs are NaNs of the same kind: quiet bit and sign kept.
            let top = |bits: u64, width: u32, mantissa: u32| {
                ((bits >> (width - 1)) & 1, (bits >> (mantissa - 1)) & 1)
            };
            let (_, m) = format(dtype).unwrap();
            let wide_bits: Vec<u64> = match wide {
                DType::F32 => widened
                    .to_values::<u32>()
                    .unwrap()
                    .into_iter()
                    .map(u64::from)
                    .collect(),
                _ => widened.to_values::<u64>().unwrap(),
            };
            let (w, wm) = format(wide).unwrap();
            for (&narrow, wide_bits) in nans.iter().zip(wide_bits) {
                assert_eq!(
                    top(u64::from(narrow), 16, m),
                    top(wide_bits, w, wm),
                    "{narrow:#06x}"
                );
            }
        }
    }

    #[test]
    fn f16_and_bf16_nans_round_trip_through_f32_and_f64_bit_for_bit() {
        round_trip(DType::F16, &F16_NANS);
        round_trip(DType::BF16, &BF16_NANS);
    }

    #[test]
    fn narrowing_keeps_the_payloads_top_bits_and_signalling_nans_signal() {
        // f32 signalling NaN 0x7f80_2000: payload in f16's top mantissa bits after the shift.
        let f32s = [0x7f80_2000u32, 0xffc0_0001, 0x7f80_0001, 0x7fa0_0000];
        let t = HostTensor::from_values(DType::F32, [4], &f32s);
        assert_eq!(
            t.clone()
                .cast(DType::F16)
                .unwrap()
                .to_values::<u16>()
                .unwrap(),
            // 0x7f80_0001's payload lies below f16's mantissa: it stays a signalling NaN.
            vec![0x7c01, 0xfe00, 0x7c01, 0x7d00]
        );
        assert_eq!(
            t.cast(DType::BF16).unwrap().to_values::<u16>().unwrap(),
            vec![0x7f81, 0xffc0, 0x7f81, 0x7fa0]
        );
        // f64 -> f32 -> f64 of a NaN whose payload fits f32 comes back exactly.
        let f64s = [0x7ff0_0000_2000_0000u64, 0xfff8_0000_0000_0000];
        let t = HostTensor::from_values(DType::F64, [2], &f64s);
        let back = t.cast(DType::F32).unwrap().cast(DType::F64).unwrap();
        assert_eq!(back.to_values::<u64>().unwrap(), f64s);
        // Between f16 and bf16 as well.
        let t = HostTensor::from_values(DType::BF16, [6], &BF16_NANS);
        let back = t.cast(DType::F16).unwrap().cast(DType::BF16).unwrap();
        assert_eq!(back.to_values::<u16>().unwrap(), BF16_NANS);
    }

    #[test]
    fn only_nans_take_the_bit_path() {
        for bits in [0x7c00u64, 0xfc00, 0x3c00, 0x0001, 0] {
            assert_eq!(convert(bits, DType::F16, DType::F32), None, "{bits:#x}");
        }
        assert_eq!(convert(1, DType::I64, DType::F32), None);
    }
}
