//! RMSNorm as transformers' `XxxRMSNorm.forward` computes it: in f32, `x * rsqrt(mean(x^2) + eps)`,
//! cast back to the input dtype, then scaled by the weight.

use burn::prelude::*;
use burn::tensor::DType;

/// `weight * (x / sqrt(mean(x^2, -1) + eps))`, the statistics in f32.
pub fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let x = x.cast(DType::F32);
    let variance = x.clone().square().mean_dim(D - 1);
    let std = (variance + eps).sqrt();
    // `1 / std` as a division: burn-ndarray's SIMD `recip` is an approximation (up to 2.8e-4
    // relative error from 32 values on, measured), which shifted every RMSNorm past 32 tokens.
    let normed = x * (std.ones_like() / std);
    // `normed * weight` (the same products as transformers' `weight * normed`): the CPU
    // backends broadcast the right-hand operand without copying it.
    normed.cast(dtype) * weight.unsqueeze::<D>()
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    use super::*;

    /// Against the formula on the host, past the 32 values where NdArray's SIMD kernels start.
    #[test]
    fn exact_on_many_rows() {
        let device = Default::default();
        let x = Tensor::<NdArray, 2>::random([64, 16], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<NdArray, 1>::ones([16], &device);
        let ours: Vec<f32> = rms_norm(x.clone(), weight, 1e-6)
            .to_data()
            .to_vec()
            .unwrap();
        let host: Vec<f32> = x.to_data().to_vec().unwrap();
        for (row, out) in host.chunks(16).zip(ours.chunks(16)) {
            let mean = row.iter().map(|v| v * v).sum::<f32>() / 16.0;
            let inv = 1.0 / (mean + 1e-6).sqrt();
            for (v, o) in row.iter().zip(out) {
                assert!(
                    (v * inv - o).abs() <= 1e-6 * (v * inv).abs().max(1.0),
                    "{o} vs {}",
                    v * inv
                );
            }
        }
    }
}
