//! Attention's head split (with RoPE) and head merge on the host: Flex ran them as strided
//! copies, a gather and three passes of products and sums, a third of the attention's time at
//! 4 x 512 tokens. Each is one parallel pass here, with the values of Burn's ops bit for bit
//! (the same products, summed in the same order).

use std::marker::PhantomData;

use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use crate::backend::runs_on_host;
use crate::host::{f32_values, tensor_of};

/// RoPE's tables as the head split applies them: `x * cos + rotate_half(x) * sin`, computed as
/// `x * cos + x[source] * signed_sin`.
#[derive(Debug, Clone)]
pub struct HostRope {
    /// Whether the tables have one row per sequence (a padded batch) rather than one shared.
    per_sequence: bool,
    /// Width of a row (the rotated part of a head: all of it).
    d: usize,
    /// `cos`, `[rows, seq, d]` row-major.
    cos: Vec<f32>,
    /// `sin` with `rotate_half`'s sign: its first `d - d / 2` columns negated.
    signed_sin: Vec<f32>,
    /// For each column, the column `rotate_half` moves there.
    source: Vec<usize>,
}

impl HostRope {
    /// The tables `cos`, `sin` (`[1 or batch, seq, d]`, as transformers' rotary embedding
    /// returns them) on the host, when the kernels take them (f32 on a host backend).
    pub fn new<B: Backend>(cos: &Tensor<B, 3>, sin: &Tensor<B, 3>) -> Option<Self> {
        if !runs_on_host::<B>("rope_tables", &[cos.dtype(), sin.dtype()]) {
            return None;
        }
        let [rows, _, d] = cos.dims();
        let half = d / 2;
        let signed_sin = f32_values(sin.clone())
            .chunks(d.max(1))
            .flat_map(|row| {
                row.iter()
                    .enumerate()
                    .map(move |(j, s)| if j < d - half { s * -1.0 } else { s * 1.0 })
            })
            .collect();
        Some(Self {
            per_sequence: rows > 1,
            d,
            cos: f32_values(cos.clone()),
            signed_sin,
            source: (half..d).chain(0..half).collect(),
        })
    }
}

/// The head kernels for backend `B`, once [`HostHeads::new`] found that they take its tensors.
#[derive(Debug)]
pub struct HostHeads<B> {
    backend: PhantomData<B>,
}

// By hand: a derive would ask `B: Copy`.
impl<B> Clone for HostHeads<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for HostHeads<B> {}

impl<B: Backend> HostHeads<B> {
    /// The head kernels, when they take tensors of `dtypes` on `B` (f32 on a host backend).
    pub fn new(dtypes: &[DType]) -> Option<Self> {
        runs_on_host::<B>("attention_heads", dtypes).then_some(Self { backend: PhantomData })
    }

    /// `x [b, s, heads * d]` as heads `[b, heads, s, d]`, contiguous (`.view(b, s, -1, d)
    /// .transpose(1, 2)`), with `rope` applied when given.
    ///
    /// # Panics
    ///
    /// If `x` is not `heads * d` wide, or `rope`'s tables are not `d` wide and long enough.
    pub fn split(
        &self,
        x: Tensor<B, 3>,
        heads: usize,
        d: usize,
        rope: Option<&HostRope>,
    ) -> Tensor<B, 4> {
        let device = x.device();
        let [batch, seq, width] = x.dims();
        assert_eq!(
            width,
            heads * d,
            "split of {width} columns into {heads} heads of {d}"
        );
        let src = f32_values(x);
        let columns = Columns { src: &src, batch, seq, width };
        tensor_of(
            columns.heads(0, heads, d, rope),
            [batch, heads, seq, d],
            &device,
        )
    }

    /// [`Self::split`] of a fused projection's q, k and v columns (`qkv [b, s, (heads + 2 *
    /// kv_heads) * d]`), read from its one buffer: RoPE on q and k.
    ///
    /// # Panics
    ///
    /// As [`Self::split`], for the fused width.
    pub fn split_fused(
        &self,
        qkv: Tensor<B, 3>,
        [heads, kv_heads]: [usize; 2],
        d: usize,
        rope: Option<&HostRope>,
    ) -> [Tensor<B, 4>; 3] {
        let device = qkv.device();
        let [batch, seq, width] = qkv.dims();
        let (q_size, kv_size) = (heads * d, kv_heads * d);
        assert_eq!(
            width,
            q_size + 2 * kv_size,
            "fused q/k/v of {width} columns"
        );
        let src = f32_values(qkv);
        let columns = Columns { src: &src, batch, seq, width };
        [
            (0, heads, rope),
            (q_size, kv_heads, rope),
            (q_size + kv_size, kv_heads, None),
        ]
        .map(|(offset, heads, rope)| {
            let values = columns.heads(offset, heads, d, rope);
            tensor_of(values, [batch, heads, seq, d], &device)
        })
    }

    /// Heads `x [b, heads, s, d]` merged back to `[b, s, heads * d]` (`.transpose(1, 2)
    /// .reshape(b, s, -1)`).
    pub fn merge(&self, x: Tensor<B, 4>) -> Tensor<B, 3> {
        let device = x.device();
        let [batch, heads, seq, d] = x.dims();
        let src = f32_values(x);
        let mut out = vec![0.0f32; batch * seq * heads * d];
        out.par_chunks_mut((heads * d).max(1))
            .enumerate()
            .for_each(|(bs, row)| {
                let (b, s) = (bs / seq.max(1), bs % seq.max(1));
                for (h, run) in row.chunks_mut(d.max(1)).enumerate() {
                    let start = ((b * heads + h) * seq + s) * d;
                    run.copy_from_slice(&src[start..start + d]);
                }
            });
        tensor_of(out, [batch, seq, heads * d], &device)
    }
}

/// A row-major `[batch, seq, width]` buffer whose column ranges hold heads.
struct Columns<'a> {
    src: &'a [f32],
    batch: usize,
    seq: usize,
    width: usize,
}

impl Columns<'_> {
    /// The `heads` heads of width `d` from column `offset` on, as `[batch, heads, seq, d]`
    /// values, RoPE applied when given.
    fn heads(&self, offset: usize, heads: usize, d: usize, rope: Option<&HostRope>) -> Vec<f32> {
        let (seq, width) = (self.seq, self.width);
        if let Some(rope) = rope {
            let rows = if rope.per_sequence {
                self.batch * seq
            } else {
                seq
            };
            assert!(
                rope.d == d && rope.cos.len() >= rows * d,
                "RoPE tables for {d}-wide heads"
            );
        }
        let mut out = vec![0.0f32; self.batch * heads * seq * d];
        out.par_chunks_mut((seq * d).max(1))
            .enumerate()
            .for_each(|(bh, head)| {
                let (b, h) = (bh / heads, bh % heads);
                for (s, row) in head.chunks_mut(d.max(1)).enumerate() {
                    let start = (b * seq + s) * width + offset + h * d;
                    let x = &self.src[start..start + d];
                    match rope {
                        None => row.copy_from_slice(x),
                        Some(rope) => {
                            let t = if rope.per_sequence { b * seq + s } else { s };
                            let cos = &rope.cos[t * d..(t + 1) * d];
                            let sin = &rope.signed_sin[t * d..(t + 1) * d];
                            for (j, o) in row.iter_mut().enumerate() {
                                let rotated = x[rope.source[j]] * sin[j];
                                *o = x[j] * cos[j] + rotated;
                            }
                        }
                    }
                }
            });
        out
    }
}
