//! What a loaded model holds: the f64 sum and count of its float values, and its bytes.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

/// Sums every float parameter of a module in f64 (and counts the elements), and the bytes the
/// backend holds them in (quantized parameters count their bytes only).
#[derive(Debug, Clone, Copy, Default)]
pub struct Checksum {
    /// The sum of every f32 value.
    pub sum: f64,
    /// How many f32 values.
    pub count: u64,
    /// The parameters' bytes as the backend holds them.
    pub bytes: u64,
}

impl<B: Backend> ModuleVisitor<B> for Checksum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let data = param.val().into_data();
        self.bytes += data.bytes.len() as u64;
        if let Ok(values) = data.as_slice::<f32>() {
            self.sum += values.iter().map(|&v| v as f64).sum::<f64>();
            self.count += values.len() as u64;
        }
    }
}

impl Checksum {
    /// The checksum of `model`'s parameters.
    pub fn of<B: Backend, M: Module<B>>(model: &M) -> Self {
        let mut checksum = Self::default();
        model.visit(&mut checksum);
        checksum
    }

    /// The checksum of raw little-endian f32 buffers (nothing counts as model bytes).
    pub fn of_f32_bytes(buffers: &[Vec<u8>]) -> Self {
        let mut checksum = Self::default();
        for v in buffers.iter().flat_map(|b| b.chunks_exact(4)) {
            checksum.sum += f32::from_le_bytes([v[0], v[1], v[2], v[3]]) as f64;
            checksum.count += 1;
        }
        checksum
    }

    /// Whether `self` holds the same values as `reference`: equal counts, sums within 1e-6
    /// relative.
    pub fn matches(&self, reference: &Self) -> bool {
        let tolerance = 1e-6 * (1.0 + reference.sum.abs());
        self.count == reference.count && (self.sum - reference.sum).abs() <= tolerance
    }
}
