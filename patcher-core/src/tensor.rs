//! Host-side tensors: a dtype, a shape and bytes, borrowed or owned.
//!
//! Every conversion op is pure data movement (concatenate, stack, chunk, transpose, ...), so ops
//! work on raw bytes with the element size taken from the dtype, and never on typed values.

use std::borrow::Cow;
use std::fmt;

/// Element type of a checkpoint tensor, as named by safetensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit IEEE float.
    F64,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// 8-bit unsigned integer.
    U8,
    /// Boolean, one byte per element.
    Bool,
}

impl DType {
    /// Size of one element in bytes.
    ///
    /// ```
    /// use patcher_core::DType;
    /// assert_eq!(DType::BF16.size_in_bytes(), 2);
    /// ```
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type (F32, F16, BF16, F64).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }

    /// Whether a checkpoint tensor of this dtype loads into a parameter of dtype `param`: any
    /// float into a float (it is cast), an integer (I64, I32, U8) into an integer, Bool or U8
    /// into a Bool.
    ///
    /// ```
    /// use patcher_core::DType;
    /// assert!(DType::BF16.loads_into(DType::F32));
    /// assert!(!DType::F32.loads_into(DType::I64));
    /// ```
    pub fn loads_into(self, param: DType) -> bool {
        use DType::*;
        match param {
            F32 | F16 | BF16 | F64 => self.is_float(),
            I64 | I32 => matches!(self, I64 | I32 | U8),
            U8 => matches!(self, U8),
            Bool => matches!(self, Bool | U8),
        }
    }

    /// The safetensors name of the dtype (`"F32"`, `"BF16"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F64 => "F64",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about a tensor without reading its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorMeta {
    /// Element type.
    pub dtype: DType,
    /// Shape, outermost dimension first (PyTorch order).
    pub shape: Vec<usize>,
}

impl TensorMeta {
    /// A new description.
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>) -> Self {
        Self { dtype, shape: shape.into() }
    }

    /// Number of elements (1 for a scalar).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of bytes the data occupies.
    pub fn num_bytes(&self) -> usize {
        self.num_elements() * self.dtype.size_in_bytes()
    }
}

/// A tensor on the host: a dtype, a shape and its bytes in row-major order.
///
/// The bytes are owned (read from a checkpoint, or the output of an op) or borrowed (a view of
/// another tensor or buffer). Ops take borrowed inputs and write each output byte once.
#[derive(Clone, PartialEq)]
pub struct HostTensor<'a> {
    /// Element type.
    pub dtype: DType,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// Little-endian element bytes, row-major; `len == num_elements * dtype size`.
    pub bytes: Cow<'a, [u8]>,
}

impl fmt::Debug for HostTensor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostTensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl<'a> HostTensor<'a> {
    /// The dtype and shape of this tensor.
    pub fn meta(&self) -> TensorMeta {
        TensorMeta::new(self.dtype, self.shape.clone())
    }

    /// Number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// A tensor from its parts. `bytes` may be borrowed (e.g. a view of a buffer) or owned.
    ///
    /// # Panics
    ///
    /// If `bytes.len()` is not `num_elements * dtype size`: that is a bug in the caller, never
    /// something a checkpoint can cause (the reader validates lengths before building tensors).
    pub fn new(
        dtype: DType,
        shape: impl Into<Vec<usize>>,
        bytes: impl Into<Cow<'a, [u8]>>,
    ) -> Self {
        let shape = shape.into();
        let bytes = bytes.into();
        let expected = shape.iter().product::<usize>() * dtype.size_in_bytes();
        assert_eq!(
            bytes.len(),
            expected,
            "HostTensor::new: {} bytes for a {dtype} tensor of shape {shape:?} (expected {expected})",
            bytes.len()
        );
        Self { dtype, shape, bytes }
    }

    /// Number of bytes of data.
    pub fn num_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the bytes are borrowed (e.g. a view of another tensor) rather than owned.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.bytes, Cow::Borrowed(_))
    }

    /// A tensor that borrows this one's bytes (no copy).
    pub fn view(&self) -> HostTensor<'_> {
        HostTensor {
            dtype: self.dtype,
            shape: self.shape.clone(),
            bytes: Cow::Borrowed(&self.bytes),
        }
    }

    /// A tensor that owns its bytes (copies them if borrowed).
    pub fn into_owned(self) -> HostTensor<'static> {
        HostTensor {
            dtype: self.dtype,
            shape: self.shape,
            bytes: Cow::Owned(self.bytes.into_owned()),
        }
    }
}
