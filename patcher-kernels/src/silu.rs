//! The gated MLPs' `silu(gate) * up`, one vectorised pass over the host buffers.

use burn::prelude::*;
use rayon::prelude::*;

use crate::backend::runs_on_host;
use crate::exp::exp;
use crate::host::{f32_values, tensor_of, PART};
use crate::simd::multiversion;

/// `silu(gate) * up`, as PyTorch's CPU `silu` computes it (`x / (1 + exp(-x))`) then the
/// product, when the kernels take both tensors (see [`HostBackend`](crate::HostBackend)) and
/// they have one shape; otherwise the tensors back, untouched.
///
/// # Errors
///
/// `(gate, up)`, untouched, where the kernel does not run.
#[allow(clippy::type_complexity)]
pub fn silu_mul<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    if gate.dims() != up.dims() || !runs_on_host::<B>("silu_mul", &[gate.dtype(), up.dtype()]) {
        return Err((gate, up));
    }
    let (device, shape) = (gate.device(), gate.dims());
    let mut values = f32_values(gate);
    silu_mul_slices(&mut values, &f32_values(up));
    Ok(tensor_of(values, shape, &device))
}

/// `silu(x[..rows / 2]) * x[rows / 2..]` for `x [rows, n]` (the fused experts' gate rows, then
/// their up rows) as `[rows / 2, n]`: written over the gate half of `x`'s own buffer, which the
/// result then views (no copy of either half).
///
/// # Errors
///
/// `x`, untouched, where the kernel does not run (or `rows` is odd).
pub fn silu_mul_halves<B: Backend>(x: Tensor<B, 2>) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let [rows, n] = x.dims();
    if rows % 2 != 0 || !runs_on_host::<B>("silu_mul_halves", &[x.dtype()]) {
        return Err(x);
    }
    let device = x.device();
    let mut values = f32_values(x);
    let (gate, up) = values.split_at_mut(rows / 2 * n);
    silu_mul_slices(gate, up);
    Ok(tensor_of(values, [rows, n], &device).narrow(0, 0, rows / 2))
}

/// `gate[i] = silu(gate[i]) * up[i]`, in parallel parts.
pub(crate) fn silu_mul_slices(gate: &mut [f32], up: &[f32]) {
    gate.par_chunks_mut(PART)
        .zip(up.par_chunks(PART))
        .for_each(|(g, u)| silu_mul_part(g, u));
}

multiversion! {
    /// One part of [`silu_mul_slices`], eight lanes at a time; the tail is padded to eight lanes
    /// so that every element is computed by the same instructions.
    fn silu_mul_part(gate: &mut [f32], up: &[f32]) {
        let (g8, g_tail) = gate.as_chunks_mut::<8>();
        let (u8, u_tail) = up.as_chunks::<8>();
        for (g, u) in g8.iter_mut().zip(u8) {
            *g = silu_mul8(*g, *u);
        }
        if !g_tail.is_empty() {
            let (mut g, mut u) = ([0.0; 8], [0.0; 8]);
            g[..g_tail.len()].copy_from_slice(g_tail);
            u[..u_tail.len()].copy_from_slice(u_tail);
            let out = silu_mul8(g, u);
            g_tail.copy_from_slice(&out[..g_tail.len()]);
        }
    }
}

/// `x / (1 + exp(-x)) * u` on eight lanes.
#[inline(always)]
fn silu_mul8(x: [f32; 8], u: [f32; 8]) -> [f32; 8] {
    std::array::from_fn(|i| x[i] / (1.0 + exp(-x[i])) * u[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_mul_matches_the_scalar_formula() {
        // Every lane position, a tail, and the extremes (exp overflowing, NaN).
        let mut x: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.73).collect();
        x.extend([-100.0, 100.0, 0.0, -0.0, f32::NAN]);
        let u: Vec<f32> = x.iter().map(|v| 1.5 - v * 0.1).collect();
        let mut out = x.clone();
        silu_mul_slices(&mut out, &u);
        for ((&x, &u), &got) in x.iter().zip(&u).zip(&out) {
            let want = x / (1.0 + (-x).exp()) * u;
            if want.is_nan() {
                assert!(got.is_nan(), "silu({x}) * {u}: {got}");
            } else {
                let tol = 4.0 * f32::EPSILON * want.abs().max(f32::MIN_POSITIVE);
                assert!(
                    (got - want).abs() <= tol,
                    "silu({x}) * {u}: {got} vs {want}"
                );
            }
        }
    }
}
