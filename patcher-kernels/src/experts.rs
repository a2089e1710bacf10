//! The eager experts loop's data movement on the host: each expert's tokens gathered into one
//! contiguous tensor, and the experts' outputs added back with their routing weights. Flex's
//! `select_assign` copies its whole output per call, so on the device these steps cost about as
//! much as the experts' matmuls.

use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use crate::backend::runs_on_host;
use crate::host::{f32_values, tensor_of, PART};

/// How an experts implementation takes one expert's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLayout {
    /// `[n, hidden] -> [n, hidden]`: the tokens as rows (`nn.Linear`'s `x @ W^T`).
    Rows,
    /// `[hidden, n] -> [hidden, n]`: the tokens as columns, the transposed problem `W @ x^T`
    /// that multiplies PyTorch-layout weights as they lie.
    Columns,
}

impl TokenLayout {
    /// The shape of `n` tokens of width `hidden`.
    ///
    /// ```
    /// use patcher_kernels::TokenLayout;
    /// assert_eq!(TokenLayout::Columns.shape(3, 8), [8, 3]);
    /// ```
    pub fn shape(self, n: usize, hidden: usize) -> [usize; 2] {
        match self {
            Self::Rows => [n, hidden],
            Self::Columns => [hidden, n],
        }
    }
}

/// The tokens one expert processes, in transformers' order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedTokens<'a> {
    /// Token rows of the flattened `[tokens, hidden]` input.
    pub tokens: &'a [usize],
    /// For each token, its slot in the top-k (the column of the routing weights).
    pub top_k_pos: &'a [usize],
}

/// The tokens of each group of `routed` taken from `hidden_states [tokens, hidden]`, one
/// contiguous tensor per group laid out as `layout` says.
///
/// # Errors
///
/// `None` where the kernel does not run (see [`HostBackend`](crate::HostBackend)).
///
/// # Panics
///
/// If a token index is out of range (the router's output is checked by its caller).
pub fn gather_tokens<B: Backend>(
    hidden_states: &Tensor<B, 2>,
    routed: &[RoutedTokens<'_>],
    layout: TokenLayout,
) -> Option<Vec<Tensor<B, 2>>> {
    if !runs_on_host::<B>("gather_tokens", &[hidden_states.dtype()]) {
        return None;
    }
    let device = hidden_states.device();
    let [_, hidden] = hidden_states.dims();
    let src = f32_values(hidden_states.clone());
    let inputs: Vec<Vec<f32>> = routed
        .par_iter()
        .map(|group| match layout {
            TokenLayout::Rows => group
                .tokens
                .iter()
                .flat_map(|&t| &src[t * hidden..(t + 1) * hidden])
                .copied()
                .collect(),
            TokenLayout::Columns => transposed_rows(&src, hidden, group.tokens),
        })
        .collect();
    let tensors = inputs.into_iter().zip(routed);
    Some(
        tensors
            .map(|(values, g)| tensor_of(values, layout.shape(g.tokens.len(), hidden), &device))
            .collect(),
    )
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

/// The experts' outputs (one per group of `routed`, laid out as `layout` says) times their
/// routing weights (`top_k_weights [tokens, k]`), added into a zero `[tokens, hidden]`: group
/// after group, as transformers' `index_add_` per expert adds them, so each sum rounds as
/// transformers' does (the same products, added in the same order). Row ranges run in parallel.
///
/// # Errors
///
/// `outputs`, untouched, where the kernel does not run (see [`HostBackend`](crate::HostBackend)):
/// an output or the weights are not f32, or the backend is not a host backend.
pub fn scatter_weighted<B: Backend>(
    outputs: Vec<Tensor<B, 2>>,
    routed: &[RoutedTokens<'_>],
    layout: TokenLayout,
    top_k_weights: &Tensor<B, 2>,
    hidden: usize,
) -> Result<Tensor<B, 2>, Vec<Tensor<B, 2>>> {
    let dtypes: Vec<DType> = outputs.iter().map(Tensor::dtype).collect();
    if !runs_on_host::<B>(
        "scatter_weighted",
        &[&dtypes[..], &[top_k_weights.dtype()]].concat(),
    ) {
        return Err(outputs);
    }
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
            for (group, values) in routed.iter().zip(&outputs) {
                let n = group.tokens.len();
                let pairs = group.tokens.iter().zip(group.top_k_pos).enumerate();
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
    Ok(tensor_of(out, [tokens, hidden], &device))
}
