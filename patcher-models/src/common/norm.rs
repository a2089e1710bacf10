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
    let normed = x * (variance + eps).sqrt().recip();
    // `normed * weight` (the same products as transformers' `weight * normed`): the CPU
    // backends broadcast the right-hand operand without copying it.
    normed.cast(dtype) * weight.unsqueeze::<D>()
}
