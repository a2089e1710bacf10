//! One row times a large matrix, over every core: a decode step's projections and LM head. Flex's
//! GEMM (`gemm` 0.19) sends a one-row product to its GEMV, which runs on the calling thread
//! whatever parallelism it is given, so at batch 1 each weight was read by one core (a
//! 151,936 x 2,048 head took 201 ms on one core, 99 ms split over two, on the development
//! machine). Here the output columns are split into one range per rayon thread, each range a
//! GEMV of its own on the columns' view of the weight.

use burn::prelude::*;
use rayon::prelude::*;

use crate::backend::runs_on_host;
use crate::HostBackend;

/// Weights below this many elements (16 MiB of f32) keep one GEMV: splitting cost more than it
/// saved on smaller ones, measured.
const SPLIT_MIN: usize = 1 << 22;
/// Column ranges are multiples of this many columns (whole SIMD registers, whole cache lines).
const ALIGN: usize = 16;

/// `x [1, k] @ w [k, n]` with the `n` output columns split over rayon's threads, when `B` is Flex,
/// both are f32, `x` is one row and `w` has at least 2^22 elements; each output value is the
/// same dot product Flex computes.
///
/// # Errors
///
/// `x`, untouched, where the kernel does not run (see [`HostBackend`]): the caller multiplies as
/// usual.
///
/// # Panics
///
/// If `x` is not `k` wide (as `matmul` would).
pub fn matmul_row<B: Backend>(
    x: Tensor<B, 2>,
    w: &Tensor<B, 2>,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let ([rows, k], [k_w, n]) = (x.dims(), w.dims());
    if rows != 1 || k * n < SPLIT_MIN {
        return Err(x);
    }
    let parts = rayon::current_num_threads().min(n / ALIGN);
    if parts < 2
        || HostBackend::of::<B>() != Some(HostBackend::Flex)
        || !runs_on_host::<B>("matmul_row", &[x.dtype(), w.dtype()])
    {
        return Err(x);
    }
    assert_eq!(k, k_w, "[1, {k}] @ [{k_w}, {n}]");
    let chunk = n.div_ceil(parts).next_multiple_of(ALIGN);
    let outputs: Vec<Tensor<B, 2>> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|part| {
            let start = part * chunk;
            let columns = w.clone().narrow(1, start, chunk.min(n - start));
            x.clone().matmul(columns)
        })
        .collect();
    Ok(Tensor::cat(outputs, 1))
}
