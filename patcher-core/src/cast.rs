//! Float casts between F32, F16, BF16 and F64 on host tensors, plus typed constructors and
//! readers.
//!
//! The loader casts every source tensor to the model's float dtype *before* the ops run
//! (transformers does the same), so casts see raw checkpoint bytes: little-endian and possibly
//! unaligned (a `Vec<u8>` read from the file, or a `Cow` borrowing any offset of a buffer).
//! Elements are therefore decoded from byte chunks, never through `&[f32]` views of the buffer.

use std::borrow::Cow;

use half::{bf16, f16};

use crate::tensor::{DType, HostTensor};

mod nan;
mod narrowing;

pub use narrowing::LossyNarrowing;

/// How a refusal of lossy narrowing ends: what to do instead.
const ALLOW_LOSSY: &str = "keep a dtype with the range these values need, or allow lossy \
                           narrowing explicitly (`HostTensor::cast_with(.., \
                           LossyNarrowing::Allow)`, `SaveOptions::allow_lossy_narrowing`, \
                           `burn-patcher convert --allow-lossy`)";

/// A cast or a typed read was asked for something the data cannot give.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CastError {
    /// A finite value is beyond the target dtype's range: the cast would make it infinite.
    #[error(
        "element {index} is {shown}, beyond the largest finite {to} ({max}): casting this \
         {from} tensor to {to} would write infinity; {allow}",
        shown = narrowing::shown(*value, *from),
        max = narrowing::shown(narrowing::max_finite(*to), *to),
        allow = ALLOW_LOSSY
    )]
    Overflow {
        /// The element's index (row-major).
        index: usize,
        /// Its value.
        value: f64,
        /// The tensor's dtype.
        from: DType,
        /// The requested dtype.
        to: DType,
    },
    /// A normal non-zero value is below the target dtype's smallest subnormal: the cast would
    /// make it zero.
    #[error(
        "element {index} is {shown}, below the smallest positive {to} ({min}): casting this \
         {from} tensor to {to} would write 0; {allow}",
        shown = narrowing::shown(*value, *from),
        min = narrowing::shown(narrowing::min_positive(*to), *to),
        allow = ALLOW_LOSSY
    )]
    Underflow {
        /// The element's index (row-major).
        index: usize,
        /// Its value.
        value: f64,
        /// The tensor's dtype.
        from: DType,
        /// The requested dtype.
        to: DType,
    },
    /// One of the dtypes is not a float type.
    #[error(
        "cannot cast a {from} tensor to {to}: only F32, F16, BF16 and F64 convert into each other; \
         keep integer and bool tensors in their checkpoint dtype"
    )]
    NotFloat {
        /// The tensor's dtype.
        from: DType,
        /// The requested dtype.
        to: DType,
    },
    /// The tensor's byte length does not match its shape and dtype.
    #[error(
        "a {dtype} tensor of shape {shape:?} needs {expected} bytes but has {actual}; \
         build tensors with HostTensor::new or the from_* constructors, which check this"
    )]
    ByteLength {
        /// The tensor's dtype.
        dtype: DType,
        /// The tensor's shape.
        shape: Vec<usize>,
        /// `num_elements * dtype size`.
        expected: usize,
        /// The actual number of bytes.
        actual: usize,
    },
}

/// Maps every `I`-byte element of `bytes` to `O` bytes, writing each output byte once and
/// reading elements from unaligned byte chunks.
fn map<const I: usize, const O: usize>(bytes: &[u8], f: impl Fn([u8; I]) -> [u8; O]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / I * O);
    let mut element = [0u8; I];
    for chunk in bytes.chunks_exact(I) {
        element.copy_from_slice(chunk);
        out.extend_from_slice(&f(element));
    }
    out
}

/// Little-endian bytes of typed values.
fn encode<T: Copy, const N: usize>(values: &[T], to_bytes: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for &v in values {
        out.extend_from_slice(&to_bytes(v));
    }
    out
}

/// Decodes little-endian float elements as f32 (F64 rounds to nearest even; NaNs keep their
/// bits as [`cast_bytes`] converts them).
fn decode_f32(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    let f32s = match dtype {
        DType::F32 => Cow::Borrowed(bytes),
        _ => Cow::Owned(cast_bytes(dtype, DType::F32, bytes)),
    };
    f32s.chunks_exact(4)
        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect()
}

/// `v` as f32 rounded to odd: truncated, with the last mantissa bit set if anything was cut.
///
/// `half`'s own f64 conversions drop the low 32 bits of the f64 (or go through a rounding f32
/// cast), which rounds twice; rounding to odd in a type with at least two more bits than the
/// target (f32 has 24, f16 11, bf16 8) and then to nearest even gives the correctly rounded
/// result.
fn round_to_odd(v: f64) -> f32 {
    let nearest = v as f32;
    if nearest.is_nan() || f64::from(nearest) == v {
        return nearest;
    }
    // Step back toward zero if rounding went away from it (magnitude bits are monotonic).
    let mut bits = nearest.to_bits();
    if f64::from(nearest).abs() > v.abs() {
        bits -= 1;
    }
    f32::from_bits(bits | 1)
}

/// `fast` (an element conversion from `from` to `to`) for every value but NaNs, which keep
/// their sign and payload bit for bit (`half` and the CPU's conversions quiet them; see
/// `nan.rs`).
fn keep_nan<const I: usize, const O: usize>(
    from: DType,
    to: DType,
    fast: impl Fn([u8; I]) -> [u8; O],
) -> impl Fn([u8; I]) -> [u8; O] {
    move |element| {
        let mut wide = [0u8; 8];
        wide[..I].copy_from_slice(&element);
        match nan::convert(u64::from_le_bytes(wide), from, to) {
            Some(bits) => {
                let mut out = [0u8; O];
                out.copy_from_slice(&bits.to_le_bytes()[..O]);
                out
            }
            None => fast(element),
        }
    }
}

/// Casts float bytes of `from` into `to` (both float, different). Each pair is its own loop
/// so the conversion inlines; F16/BF16 go through f32 exactly, so every cast rounds once.
fn cast_bytes(from: DType, to: DType, b: &[u8]) -> Vec<u8> {
    use DType::{BF16, F16, F32, F64};
    let f16_to_f32 = |a| f16::from_le_bytes(a).to_f32();
    let bf16_to_f32 = |a| bf16::from_le_bytes(a).to_f32();
    match (from, to) {
        (F16, F32) => map(b, keep_nan(from, to, |a| f16_to_f32(a).to_le_bytes())),
        (BF16, F32) => map(b, keep_nan(from, to, |a| bf16_to_f32(a).to_le_bytes())),
        (F64, F32) => map(
            b,
            keep_nan(from, to, |a| (f64::from_le_bytes(a) as f32).to_le_bytes()),
        ),
        (F32, F16) => map(
            b,
            keep_nan(from, to, |a| {
                f16::from_f32(f32::from_le_bytes(a)).to_le_bytes()
            }),
        ),
        (BF16, F16) => map(
            b,
            keep_nan(from, to, |a| f16::from_f32(bf16_to_f32(a)).to_le_bytes()),
        ),
        (F64, F16) => map(
            b,
            keep_nan(from, to, |a| {
                f16::from_f32(round_to_odd(f64::from_le_bytes(a))).to_le_bytes()
            }),
        ),
        (F32, BF16) => map(
            b,
            keep_nan(from, to, |a| {
                bf16::from_f32(f32::from_le_bytes(a)).to_le_bytes()
            }),
        ),
        (F16, BF16) => map(
            b,
            keep_nan(from, to, |a| bf16::from_f32(f16_to_f32(a)).to_le_bytes()),
        ),
        (F64, BF16) => map(
            b,
            keep_nan(from, to, |a| {
                bf16::from_f32(round_to_odd(f64::from_le_bytes(a))).to_le_bytes()
            }),
        ),
        (F32, F64) => map(
            b,
            keep_nan(from, to, |a| f64::from(f32::from_le_bytes(a)).to_le_bytes()),
        ),
        (F16, F64) => map(
            b,
            keep_nan(from, to, |a| f64::from(f16_to_f32(a)).to_le_bytes()),
        ),
        (BF16, F64) => map(
            b,
            keep_nan(from, to, |a| f64::from(bf16_to_f32(a)).to_le_bytes()),
        ),
        // Callers pass two different float dtypes.
        _ => b.to_vec(),
    }
}

impl<'a> HostTensor<'a> {
    /// Casts to `dtype`, rounding to nearest even, and refuses lossy narrowing: a finite value
    /// that would become infinite ([`CastError::Overflow`]) or a normal non-zero value that
    /// would become zero ([`CastError::Underflow`]); see [`cast_with`](Self::cast_with) to
    /// allow it. NaNs keep their bits (sign, quiet bit and payload; narrowing keeps the
    /// payload's top bits), so a widening and narrowing round trip gives back the original
    /// bytes. Casting to the tensor's own dtype returns it unchanged (a borrowed tensor stays
    /// borrowed: no copy).
    ///
    /// ```
    /// use patcher_core::{CastError, DType, HostTensor};
    /// let t = HostTensor::from_f32([2], &[1.0, 0.1]);
    /// let h = t.cast(DType::BF16)?;
    /// assert_eq!(h.to_f32_vec()?, vec![1.0, 0.10009765625]);
    /// // 1e6 is beyond f16's range (65504).
    /// let big = HostTensor::from_f32([1], &[1e6]);
    /// assert!(matches!(big.cast(DType::F16), Err(CastError::Overflow { .. })));
    /// # Ok::<(), patcher_core::CastError>(())
    /// ```
    pub fn cast(self, dtype: DType) -> Result<HostTensor<'a>, CastError> {
        self.cast_with(dtype, LossyNarrowing::Refuse)
    }

    /// [`cast`](Self::cast), with lossy narrowing refused or allowed (then values beyond the
    /// target's range become infinite and values below its smallest subnormal become zero,
    /// as PyTorch's `Tensor.to(dtype)` does).
    ///
    /// ```
    /// use patcher_core::{DType, HostTensor, LossyNarrowing};
    /// let t = HostTensor::from_f32([2], &[1e6, 1e-30]);
    /// let h = t.cast_with(DType::F16, LossyNarrowing::Allow)?;
    /// assert_eq!(h.to_f32_vec()?, vec![f32::INFINITY, 0.0]);
    /// # Ok::<(), patcher_core::CastError>(())
    /// ```
    pub fn cast_with(
        self,
        dtype: DType,
        narrowing: LossyNarrowing,
    ) -> Result<HostTensor<'a>, CastError> {
        if self.dtype == dtype {
            return Ok(self);
        }
        if !self.dtype.is_float() || !dtype.is_float() {
            return Err(CastError::NotFloat { from: self.dtype, to: dtype });
        }
        self.check_len()?;
        let bytes = cast_bytes(self.dtype, dtype, &self.bytes);
        if narrowing == LossyNarrowing::Refuse {
            if let Some(lost) = narrowing::first_lost(self.dtype, &self.bytes, dtype, &bytes) {
                return Err(lost);
            }
        }
        Ok(HostTensor { dtype, shape: self.shape, bytes: Cow::Owned(bytes) })
    }

    /// The values as f32, from any float dtype (F64 rounds to nearest even).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, CastError> {
        if !self.dtype.is_float() {
            return Err(CastError::NotFloat { from: self.dtype, to: DType::F32 });
        }
        self.check_len()?;
        Ok(decode_f32(self.dtype, &self.bytes))
    }

    /// The values as `T`, read in the tensor's own dtype (no conversion), e.g. `i64` for I64 or
    /// `half::bf16` for BF16. Fails if `T`'s size is not the dtype's element size.
    pub fn to_values<T: bytemuck::Pod>(&self) -> Result<Vec<T>, CastError> {
        self.check_len()?;
        let size = self.dtype.size_in_bytes();
        if std::mem::size_of::<T>() != size {
            return Err(CastError::ByteLength {
                dtype: self.dtype,
                shape: self.shape.clone(),
                expected: self.num_elements() * std::mem::size_of::<T>(),
                actual: self.bytes.len(),
            });
        }
        // The bytes may sit at any offset of a buffer: read each element unaligned.
        Ok(self
            .bytes
            .chunks_exact(size)
            .map(bytemuck::pod_read_unaligned)
            .collect())
    }

    fn check_len(&self) -> Result<(), CastError> {
        let expected = self.num_elements() * self.dtype.size_in_bytes();
        if self.bytes.len() == expected {
            Ok(())
        } else {
            Err(CastError::ByteLength {
                dtype: self.dtype,
                shape: self.shape.clone(),
                expected,
                actual: self.bytes.len(),
            })
        }
    }
}

impl HostTensor<'static> {
    /// An owned tensor of `dtype` from typed values in native byte order (little-endian on every
    /// target burn-patcher supports), e.g. `from_values(DType::I64, [2], &[1i64, 2])`.
    ///
    /// # Panics
    ///
    /// If `size_of::<T>()` is not the dtype's element size or `values.len()` does not match
    /// `shape`: both are bugs in the calling code, not bad data.
    pub fn from_values<T: bytemuck::Pod>(
        dtype: DType,
        shape: impl Into<Vec<usize>>,
        values: &[T],
    ) -> Self {
        assert_eq!(
            std::mem::size_of::<T>(),
            dtype.size_in_bytes(),
            "HostTensor::from_values: element type size does not match {dtype}"
        );
        HostTensor::new(dtype, shape, bytemuck::cast_slice::<T, u8>(values).to_vec())
    }

    /// An owned F32 tensor.
    ///
    /// # Panics
    ///
    /// If `values.len()` does not match `shape`.
    pub fn from_f32(shape: impl Into<Vec<usize>>, values: &[f32]) -> Self {
        HostTensor::new(DType::F32, shape, encode(values, f32::to_le_bytes))
    }

    /// An owned F16 tensor.
    ///
    /// # Panics
    ///
    /// If `values.len()` does not match `shape`.
    pub fn from_f16(shape: impl Into<Vec<usize>>, values: &[f16]) -> Self {
        HostTensor::new(DType::F16, shape, encode(values, f16::to_le_bytes))
    }

    /// An owned BF16 tensor.
    ///
    /// # Panics
    ///
    /// If `values.len()` does not match `shape`.
    pub fn from_bf16(shape: impl Into<Vec<usize>>, values: &[bf16]) -> Self {
        HostTensor::new(DType::BF16, shape, encode(values, bf16::to_le_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOATS: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::F64];

    #[test]
    fn exact_values_survive_every_float_cast() {
        let values = [0.0f32, -1.5, 2.0, 1024.0, -0.25];
        for from in FLOATS {
            for to in FLOATS {
                let t = HostTensor::from_f32([5], &values).cast(from).unwrap();
                let c = t.cast(to).unwrap();
                assert_eq!(c.dtype, to);
                assert_eq!(c.shape, vec![5]);
                assert_eq!(c.num_bytes(), 5 * to.size_in_bytes());
                assert_eq!(c.to_f32_vec().unwrap(), values, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn rounds_to_nearest_even() {
        // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to even (1).
        // 1 + 3 * 2^-8 lies between 1 + 2^-7 and 1 + 2^-6: ties go to even (1 + 2^-6).
        let t = HostTensor::from_f32([2], &[1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0]);
        let b = t.cast(DType::BF16).unwrap();
        assert_eq!(b.to_values::<u16>().unwrap(), vec![0x3f80, 0x3f82]);
        // Same for f16 with its 10-bit mantissa: 1 + 2^-11 -> 1.
        let t = HostTensor::from_f32([1], &[1.0 + 1.0 / 2048.0]);
        assert_eq!(
            t.cast(DType::F16).unwrap().to_values::<u16>().unwrap(),
            vec![0x3c00]
        );
        // F64 -> F16 rounds once: 1 + 2^-11 + 2^-40 is above the tie, so it rounds up.
        let v = 1.0 + 1.0 / 2048.0 + 2f64.powi(-40);
        let t = HostTensor::from_values(DType::F64, [1], &[v]);
        assert_eq!(
            t.cast(DType::F16).unwrap().to_values::<u16>().unwrap(),
            vec![0x3c01]
        );
        // The same for BF16, with a bit so low that truncating the f64 would lose it.
        let v = 1.0 + 1.0 / 256.0 + 2f64.powi(-50);
        let t = HostTensor::from_values(DType::F64, [1], &[v]);
        assert_eq!(
            t.cast(DType::BF16).unwrap().to_values::<u16>().unwrap(),
            vec![0x3f81]
        );
        // Below the tie it rounds down, and F64 -> F32 rounds to nearest even.
        let v = 1.0 + 1.0 / 256.0 - 2f64.powi(-50);
        let t = HostTensor::from_values(DType::F64, [1], &[v]);
        assert_eq!(
            t.clone()
                .cast(DType::BF16)
                .unwrap()
                .to_values::<u16>()
                .unwrap(),
            vec![0x3f80]
        );
        assert_eq!(
            t.cast(DType::F32).unwrap().to_f32_vec().unwrap(),
            vec![1.0 + 1.0 / 256.0]
        );
    }

    #[test]
    fn identity_cast_keeps_the_borrow() {
        let bytes = 1.5f32.to_le_bytes();
        let t = HostTensor::new(DType::F32, [1], &bytes[..]);
        let c = t.cast(DType::F32).unwrap();
        assert!(c.is_borrowed());
        let t = HostTensor::new(DType::I64, [0], &[][..]);
        assert!(t.cast(DType::I64).unwrap().is_borrowed());
    }

    #[test]
    fn reads_unaligned_bytes() {
        // Put an f32 at an odd offset, as a borrowed tensor may be.
        let mut buffer = vec![0u8];
        buffer.extend_from_slice(&3.25f32.to_le_bytes());
        buffer.extend_from_slice(&(-2.0f32).to_le_bytes());
        let t = HostTensor::new(DType::F32, [2], &buffer[1..]);
        assert_eq!(t.to_f32_vec().unwrap(), vec![3.25, -2.0]);
        assert_eq!(t.to_values::<f32>().unwrap(), vec![3.25, -2.0]);
        let h = t.cast(DType::F16).unwrap();
        assert_eq!(h.to_values::<u16>().unwrap(), vec![0x4280, 0xc000]);
    }

    #[test]
    fn non_float_casts_are_errors() {
        let t = HostTensor::from_values(DType::I64, [2], &[1i64, 2]);
        let err = t.clone().cast(DType::F32).unwrap_err();
        assert_eq!(
            err,
            CastError::NotFloat { from: DType::I64, to: DType::F32 }
        );
        assert!(err.to_string().contains("cannot cast a I64 tensor to F32"));
        assert!(t.to_f32_vec().is_err());
        assert_eq!(t.to_values::<i64>().unwrap(), vec![1, 2]);
        let f = HostTensor::from_f32([1], &[1.0]);
        assert!(matches!(
            f.cast(DType::U8),
            Err(CastError::NotFloat { to: DType::U8, .. })
        ));
    }

    #[test]
    fn typed_constructors() {
        let h = HostTensor::from_f16([2], &[f16::from_f32(1.0), f16::from_f32(-2.0)]);
        assert_eq!(h.bytes.as_ref(), &[0x00, 0x3c, 0x00, 0xc0]);
        let b = HostTensor::from_bf16([1, 1], &[bf16::from_f32(1.0)]);
        assert_eq!(b.bytes.as_ref(), &[0x80, 0x3f]);
        let f = HostTensor::from_f32([1], &[1.0]);
        assert_eq!(f.bytes.as_ref(), &[0, 0, 0x80, 0x3f]);
        assert!(f.to_values::<u16>().is_err());
    }

    #[test]
    fn wrong_byte_length_is_an_error() {
        let t = HostTensor {
            dtype: DType::F32,
            shape: vec![2],
            bytes: Cow::Owned(vec![0; 4]),
        };
        let err = t.to_f32_vec().unwrap_err();
        assert!(matches!(
            err,
            CastError::ByteLength { expected: 8, actual: 4, .. }
        ));
    }
}
