//! Softmax attention on the host, for Flex: Burn's kernel on Flex computes every query against
//! every key with a scalar `exp`, a causal mask's forbidden half included. Here each block of
//! query positions (all `n_rep` query heads of a KV head at once) multiplies only the keys its
//! block may attend (with a causal mask, about half of them on average), and the softmax's `exp`
//! is vectorised. The two products are the GEMM Flex calls (`gemm`, one thread per task, the KV
//! heads in parallel). Values: `softmax(q @ k^T * scale + mask) @ v` with masked keys
//! contributing exact zeros, as in transformers' eager attention; a row with no key at all is
//! zero, as Flex's was.

#[cfg(feature = "flex")]
use blocked::{host_attention, takes_mask};
use burn::prelude::*;

/// `softmax(q @ k^T * scale + mask) @ v` for grouped-query heads stacked: `q [b, KV, n_rep * s,
/// d]` (the `n_rep` query heads of each KV head, one after the other), `k`, `v [b, KV, keys, d]`,
/// `mask` (`true` where forbidden) `[1 or b, 1, 1 or s, keys]`, shared by the heads. Returns
/// `q`'s shape.
///
/// # Errors
///
/// `(q, k, v)`, untouched, where the kernel does not run: the backend is not Flex (or the
/// kernels are off, see [`HostBackend`](crate::HostBackend)), a tensor is not f32, or the mask
/// has another shape.
#[allow(clippy::type_complexity)]
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4, Bool>>,
    n_rep: usize,
    scale: f64,
) -> Result<Tensor<B, 4>, (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)> {
    #[cfg(feature = "flex")]
    {
        let [batch, _, rows, _] = q.dims();
        let (seq, keys) = (rows / n_rep.max(1), k.dims()[2]);
        let dtypes = [q.dtype(), k.dtype(), v.dtype()];
        if crate::HostBackend::of::<B>() == Some(crate::HostBackend::Flex)
            && crate::backend::runs_on_host::<B>("attention", &dtypes)
            && mask.is_none_or(|m| takes_mask(m.dims(), batch, seq, keys))
        {
            return Ok(host_attention(q, k, v, mask, n_rep, scale));
        }
    }
    let _ = (mask, n_rep, scale);
    Err((q, k, v))
}

#[cfg(feature = "flex")]
mod blocked {
    use burn::prelude::*;
    use rayon::prelude::*;

    use crate::exp::exp;
    use crate::host::{f32_values, tensor_of};
    use crate::simd::multiversion;

    /// Query positions per block.
    const BLOCK: usize = 64;

    /// A boolean mask on the host, `[batch or 1, 1, seq or 1, keys]`, `true` where forbidden.
    struct HostMask {
        masked: Vec<bool>,
        batch: usize,
        rows: usize,
        keys: usize,
    }

    impl HostMask {
        /// Whether position `s` of batch row `b` may not attend key `key`.
        fn row(&self, b: usize, s: usize) -> &[bool] {
            let b = if self.batch == 1 { 0 } else { b };
            let s = if self.rows == 1 { 0 } else { s };
            let start = (b * self.rows + s) * self.keys;
            &self.masked[start..start + self.keys]
        }
    }

    /// Whether [`attention`] takes a mask of these dims for `batch` rows, `seq` positions and `keys`
    /// keys (one mask for every head; one row, or one per position).
    pub(super) fn takes_mask(dims: [usize; 4], batch: usize, seq: usize, keys: usize) -> bool {
        let [b, h, s, k] = dims;
        (b == 1 || b == batch) && h == 1 && (s == 1 || s == seq) && k == keys
    }

    /// `softmax(q @ k^T * scale + mask) @ v` for grouped-query heads stacked: `q [b, KV, n_rep * s,
    /// d]` (the `n_rep` query heads of each KV head, one after the other), `k`, `v [b, KV, keys, d]`,
    /// `mask` as [`takes_mask`] allows. Returns `q`'s shape.
    pub(super) fn host_attention<B: Backend>(
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        mask: Option<&Tensor<B, 4, Bool>>,
        n_rep: usize,
        scale: f64,
    ) -> Tensor<B, 4> {
        let device = q.device();
        let [batch, kv_heads, rows, d] = q.dims();
        let keys = k.dims()[2];
        let seq = rows / n_rep.max(1);
        let mask = mask.map(|m| {
            let [batch, _, rows, keys] = m.dims();
            HostMask {
                masked: m.to_data().iter::<bool>().collect(),
                batch,
                rows,
                keys,
            }
        });
        let (q, k, v) = (f32_values(q), f32_values(k), f32_values(v));
        let shape = Shape { n_rep, seq, keys, d, scale: scale as f32 };
        let mut out = vec![0.0f32; q.len()];
        let head_len = (rows * d).max(1);
        out.par_chunks_mut(head_len)
            .enumerate()
            .for_each(|(head, out)| {
                let kv_len = keys * d;
                let inputs = HeadInputs {
                    q: &q[head * head_len..(head + 1) * head_len],
                    k: &k[head * kv_len..(head + 1) * kv_len],
                    v: &v[head * kv_len..(head + 1) * kv_len],
                    mask: mask.as_ref().map(|m| (m, head / kv_heads)),
                };
                head_attention(&shape, &inputs, out);
            });
        tensor_of(out, [batch, kv_heads, rows, d], &device)
    }

    /// The sizes every head shares.
    struct Shape {
        n_rep: usize,
        seq: usize,
        keys: usize,
        d: usize,
        scale: f32,
    }

    /// One KV head's operands: its stacked queries `[n_rep * seq, d]`, keys and values `[keys, d]`,
    /// and the mask with the head's batch row.
    struct HeadInputs<'a> {
        q: &'a [f32],
        k: &'a [f32],
        v: &'a [f32],
        mask: Option<(&'a HostMask, usize)>,
    }

    /// One KV head, block of positions after block, into `out [n_rep * seq, d]`.
    fn head_attention(shape: &Shape, inputs: &HeadInputs<'_>, out: &mut [f32]) {
        let Shape { n_rep, seq, keys, d, scale } = *shape;
        let forbidden = |s: usize| inputs.mask.map(|(m, b)| m.row(b, s));
        for s0 in (0..seq).step_by(BLOCK) {
            let positions = s0..(s0 + BLOCK).min(seq);
            let r = positions.len();
            // The keys some position of the block may attend.
            let mut span: Option<(usize, usize)> = None;
            for s in positions.clone() {
                let (first, last) = match forbidden(s) {
                    None => (Some(0), keys.checked_sub(1)),
                    Some(row) => (row.iter().position(|m| !m), row.iter().rposition(|m| !m)),
                };
                if let (Some(first), Some(last)) = (first, last) {
                    span = Some(span.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
                }
            }
            // No position of the block attends any key: its rows stay zero.
            let Some((lo, hi)) = span else { continue };
            let width = hi + 1 - lo;
            let m = n_rep * r;
            // The block's queries of every stacked head, `[n_rep * r, d]`.
            let mut queries = Vec::with_capacity(m * d);
            for rep in 0..n_rep {
                let start = (rep * seq + s0) * d;
                queries.extend_from_slice(&inputs.q[start..start + r * d]);
            }
            // `scores [m, width] = queries @ k^T`: the keys `lo..=hi` (rows of `[keys, d]`) read as
            // the columns of `k^T [d, width]`.
            let mut scores = vec![0.0f32; m * width];
            let keys_t = Operand::columns(&inputs.k[lo * d..], d);
            gemm_into(&mut scores, &queries, keys_t, [m, width, d]);
            for (i, row) in scores.chunks_mut(width).enumerate() {
                let mask_row = forbidden(s0 + i % r).map(|row| &row[lo..=hi]);
                softmax_row(row, scale, mask_row);
            }
            // `block_out [m, d] = weights @ v[lo..=hi]`.
            let mut block_out = vec![0.0f32; m * d];
            let values = Operand::rows(&inputs.v[lo * d..], d);
            gemm_into(&mut block_out, &scores, values, [m, d, width]);
            for rep in 0..n_rep {
                let start = (rep * seq + s0) * d;
                out[start..start + r * d]
                    .copy_from_slice(&block_out[rep * r * d..(rep + 1) * r * d]);
            }
        }
    }

    /// A matrix operand read from a slice: element `(i, j)` at `data[i * row_stride + j *
    /// col_stride]`.
    #[derive(Clone, Copy)]
    struct Operand<'a> {
        data: &'a [f32],
        row_stride: usize,
        col_stride: usize,
    }

    impl<'a> Operand<'a> {
        /// Row-major rows of `width` values.
        fn rows(data: &'a [f32], width: usize) -> Self {
            Self { data, row_stride: width, col_stride: 1 }
        }

        /// The transpose of row-major rows of `width` values: those rows as columns.
        fn columns(data: &'a [f32], width: usize) -> Self {
            Self { data, row_stride: 1, col_stride: width }
        }
    }

    /// `dst [m, n] = lhs [m, k] @ rhs [k, n]` (`dst` and `lhs` row-major) with Flex's GEMM, on the
    /// calling thread.
    fn gemm_into(dst: &mut [f32], lhs: &[f32], rhs: Operand<'_>, [m, n, k]: [usize; 3]) {
        if m == 0 || n == 0 {
            return;
        }
        let last = (k.max(1) - 1) * rhs.row_stride + (n - 1) * rhs.col_stride;
        // The bounds the unsafe call relies on; a failure here is a bug in this file.
        assert!(dst.len() >= m * n && lhs.len() >= m * k && (k == 0 || rhs.data.len() > last));
        // SAFETY: the pointers cover `dst [m, n]`, `lhs [m, k]` and every `rhs` element read (the
        // assertion above), `dst` does not overlap the inputs (a `&mut` borrow), and the GEMM runs
        // on this thread only.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                lhs.as_ptr(),
                1,
                k as isize,
                rhs.data.as_ptr(),
                rhs.col_stride as isize,
                rhs.row_stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }

    /// `row` (raw scores) to its softmax weights: scaled, masked keys at `-inf`, then `exp(x - max)`
    /// normalised by its sum; a row with every key masked becomes zeros.
    fn softmax_row(row: &mut [f32], scale: f32, masked: Option<&[bool]>) {
        for (j, x) in row.iter_mut().enumerate() {
            *x = if masked.is_some_and(|m| m[j]) {
                f32::NEG_INFINITY
            } else {
                *x * scale
            };
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            return;
        }
        let sum = exp_shifted(row, max);
        let inv = 1.0 / sum;
        for x in row.iter_mut() {
            *x *= inv;
        }
    }

    multiversion! {
        /// `row[j] = exp(row[j] - max)`, eight lanes at a time (the tail padded with `-inf`,
        /// whose `exp` is 0), and their sum.
        fn exp_shifted_into(row: &mut [f32], max: f32, sum: &mut f32) {
            let (lanes, tail) = row.as_chunks_mut::<8>();
            let mut total = 0.0f32;
            for lane in lanes.iter_mut() {
                *lane = std::array::from_fn(|i| exp(lane[i] - max));
                total += lane.iter().sum::<f32>();
            }
            if !tail.is_empty() {
                let mut padded = [f32::NEG_INFINITY; 8];
                padded[..tail.len()].copy_from_slice(tail);
                let e: [f32; 8] = std::array::from_fn(|i| exp(padded[i] - max));
                tail.copy_from_slice(&e[..tail.len()]);
                total += tail.iter().sum::<f32>();
            }
            *sum = total;
        }
    }

    /// [`exp_shifted_into`]'s sum.
    fn exp_shifted(row: &mut [f32], max: f32) -> f32 {
        let mut sum = 0.0;
        exp_shifted_into(row, max, &mut sum);
        sum
    }
}
