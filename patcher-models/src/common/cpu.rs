//! Where the CPU backends' own kernels are slow, the kit's way around them.
//!
//! Flex and NdArray compute transcendental functions one element at a time, on one thread,
//! through libm: Burn's `silu` on a `[2048, 2048]` f32 tensor took 37.6 ms on Flex where
//! PyTorch's took 0.9 ms (2 threads). And the eager experts loop's gathers, transposes and
//! scatter-adds cost Flex about as much as the experts' matmuls (each `select_assign` copies its
//! whole output; a transposed operand costs its GEMM a quarter of its rate). On these two
//! backends those steps therefore run here, on the tensors' host buffers, in parallel over the
//! rayon threads: the gated MLPs' product `silu(gate) * up` (vectorised with `wide`'s `f32x8`
//! exponential), and the routed tokens' gather and weighted scatter-add. On Flex the buffers
//! move in and out without a copy when the tensors are contiguous and not shared; on NdArray
//! they are copied. Other backends (the GPUs, and `Autodiff`, whose graph a host round trip would
//! cut) keep Burn's ops.

use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;
use wide::f32x8;

use super::dispatch::ExpertDispatch;
use super::moe::TokenLayout;

/// A CPU backend whose kernels the kit replaces or drives differently, by Burn's backend name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CpuBackend {
    /// `burn::backend::Flex`.
    Flex,
    /// `burn::backend::NdArray`.
    NdArray,
}

impl CpuBackend {
    /// The CPU backend `B` is, if it is one of them (an `Autodiff` wrapper is not).
    pub(crate) fn of<B: Backend>(device: &B::Device) -> Option<Self> {
        match B::name(device).as_str() {
            "flex" => Some(Self::Flex),
            "ndarray" => Some(Self::NdArray),
            _ => None,
        }
    }
}

/// Elements per rayon task: large enough that a task outweighs its scheduling.
const PART: usize = 1 << 14;

/// Whether the host kernel `kernel` takes these tensors: `B` is a CPU backend and each dtype is
/// f32. The choice is a `trace` event (target `patcher_models::kernels`).
pub(crate) fn runs_on_host<B: Backend>(
    kernel: &'static str,
    device: &B::Device,
    dtypes: &[DType],
) -> bool {
    let backend = CpuBackend::of::<B>(device);
    let taken = backend.is_some() && dtypes.iter().all(|d| *d == DType::F32);
    tracing::trace!(
        target: "patcher_models::kernels",
        kernel,
        taken,
        backend = ?backend,
        dtypes = ?dtypes,
        "host kernel"
    );
    taken
}

/// An f32 tensor's values (the caller checked the dtype): moved out of the backend without a
/// copy where it allows it (Flex, a contiguous tensor not shared), copied otherwise.
pub(super) fn f32_values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    let data = tensor.into_data();
    if data.as_slice::<f32>().is_ok() {
        // Cannot fail: the same dtype check and cast as `as_slice`'s.
        data.into_vec().unwrap_or_default()
    } else {
        // Bytes not aligned for f32 (never seen from Burn's CPU backends).
        data.iter().collect()
    }
}

/// `values` as a tensor of `shape` on `device` (moved in without a copy on Flex).
pub(super) fn tensor_of<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// `silu(gate) * up` on the host when [`runs_on_host`] takes both and they have one shape;
/// otherwise the tensors back, untouched.
pub(crate) fn silu_mul<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    let device = gate.device();
    if gate.dims() != up.dims()
        || !runs_on_host::<B>("silu_mul", &device, &[gate.dtype(), up.dtype()])
    {
        return Err((gate, up));
    }
    let shape = gate.dims();
    let mut values = f32_values(gate);
    silu_mul_slices(&mut values, &f32_values(up));
    Ok(tensor_of(values, shape, &device))
}

/// `silu(x[..rows / 2]) * x[rows / 2..]` for `x [rows, n]` (the fused experts' gate rows, then
/// their up rows) as `[rows / 2, n]`, on the host when [`runs_on_host`] takes `x`: written over
/// the gate half of `x`'s own buffer, which the result then views (no copy of either half);
/// otherwise `x` back, untouched.
pub(crate) fn silu_mul_halves<B: Backend>(x: Tensor<B, 2>) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let device = x.device();
    let [rows, n] = x.dims();
    if rows % 2 != 0 || !runs_on_host::<B>("silu_mul_halves", &device, &[x.dtype()]) {
        return Err(x);
    }
    let half = rows / 2 * n;
    let mut values = f32_values(x);
    let (gate, up) = values.split_at_mut(half);
    silu_mul_slices(gate, up);
    Ok(tensor_of(values, [rows, n], &device).narrow(0, 0, rows / 2))
}

/// The tokens routed to each expert of `dispatch`, one contiguous tensor per assignment, laid
/// out as `layout` says (`[n, hidden]` rows, or `[hidden, n]` columns for the transposed
/// problem). The caller checked [`runs_on_host`] for `hidden_states`.
pub(crate) fn gather_expert_inputs<B: Backend>(
    hidden_states: &Tensor<B, 2>,
    dispatch: &ExpertDispatch,
    layout: TokenLayout,
) -> Vec<Tensor<B, 2>> {
    let device = hidden_states.device();
    let [_, hidden] = hidden_states.dims();
    let src = f32_values(hidden_states.clone());
    let inputs: Vec<Vec<f32>> = dispatch
        .assignments
        .par_iter()
        .map(|a| match layout {
            TokenLayout::Rows => a
                .token_idx
                .iter()
                .flat_map(|&t| &src[t * hidden..(t + 1) * hidden])
                .copied()
                .collect(),
            TokenLayout::Columns => transposed_rows(&src, hidden, &a.token_idx),
        })
        .collect();
    inputs
        .into_iter()
        .zip(&dispatch.assignments)
        .map(|(values, a)| tensor_of(values, layout.shape(a.token_idx.len(), hidden), &device))
        .collect()
}

/// Rows `rows` of the row-major `[_, width]` matrix `src`, as the columns of a row-major
/// `[width, rows.len()]` matrix; eight rows at a time, so that each write is a run of eight.
fn transposed_rows(src: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    let n = rows.len();
    let mut dst = vec![0.0; width * n];
    for (block, chunk) in rows.chunks(8).enumerate() {
        let j0 = block * 8;
        let starts: Vec<usize> = chunk.iter().map(|&r| r * width).collect();
        for h in 0..width {
            let out = &mut dst[h * n + j0..h * n + j0 + chunk.len()];
            for (o, start) in out.iter_mut().zip(&starts) {
                *o = src[start + h];
            }
        }
    }
    dst
}

/// The experts' outputs (one per assignment of `dispatch`, laid out as `layout` says) times
/// their routing weights (`top_k_weights [tokens, k]`), added into a zero `[tokens, hidden]`:
/// expert after expert, as transformers' `index_add_` per expert adds them, so each sum rounds as
/// transformers' does (the same products, added in the same order). Row ranges run in parallel.
/// The caller checked [`runs_on_host`] for the outputs and `top_k_weights`.
pub(crate) fn scatter_expert_outputs<B: Backend>(
    outputs: Vec<Tensor<B, 2>>,
    dispatch: &ExpertDispatch,
    layout: TokenLayout,
    top_k_weights: &Tensor<B, 2>,
    hidden: usize,
) -> Tensor<B, 2> {
    let device = top_k_weights.device();
    let [tokens, top_k] = top_k_weights.dims();
    let weights = f32_values(top_k_weights.clone());
    let outputs: Vec<Vec<f32>> = outputs.into_iter().map(f32_values).collect();
    let width = hidden.max(1);
    let mut out = vec![0.0f32; tokens * hidden];
    let rows_per_part = PART.div_ceil(width);
    out.par_chunks_mut(rows_per_part * width)
        .enumerate()
        .for_each(|(part, rows)| {
            let first = part * rows_per_part;
            let owned = first..first + rows.len() / width;
            for (a, values) in dispatch.assignments.iter().zip(&outputs) {
                let n = a.token_idx.len();
                let pairs = a.token_idx.iter().zip(&a.top_k_pos).enumerate();
                // This part's tokens: `(j, row offset in `rows`, routing weight)`.
                let mine: Vec<(usize, usize, f32)> = pairs
                    .filter(|(_, (t, _))| owned.contains(*t))
                    .map(|(j, (&t, &pos))| (j, (t - first) * hidden, weights[t * top_k + pos]))
                    .collect();
                match layout {
                    TokenLayout::Rows => {
                        for &(j, row, w) in &mine {
                            let src = &values[j * hidden..(j + 1) * hidden];
                            for (acc, &value) in rows[row..row + hidden].iter_mut().zip(src) {
                                let product = value * w;
                                *acc += product;
                            }
                        }
                    }
                    // Eight tokens at a time, so that the reads of each output row are runs.
                    TokenLayout::Columns => {
                        for block in mine.chunks(8) {
                            for h in 0..hidden {
                                let src = &values[h * n..(h + 1) * n];
                                for &(j, row, w) in block {
                                    let product = src[j] * w;
                                    rows[row + h] += product;
                                }
                            }
                        }
                    }
                }
            }
        });
    tensor_of(out, [tokens, hidden], &device)
}

/// `gate[i] = silu(gate[i]) * up[i]`, in parallel parts.
fn silu_mul_slices(gate: &mut [f32], up: &[f32]) {
    gate.par_chunks_mut(PART)
        .zip(up.par_chunks(PART))
        .for_each(|(g, u)| silu_mul_part(g, u));
}

/// One part of [`silu_mul_slices`], eight lanes at a time; the tail is padded to eight lanes so
/// that every element is computed by the same instructions.
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

/// `x / (1 + exp(-x)) * u`: PyTorch's CPU `silu` (its vectorised form), then the product.
#[inline]
fn silu_mul8(x: [f32; 8], u: [f32; 8]) -> [f32; 8] {
    let x = f32x8::from(x);
    (x / (f32x8::ONE + (-x).exp()) * f32x8::from(u)).to_array()
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
