//! Attention's head split (with RoPE) and head merge on the host, for the CPU backends (see
//! [`cpu`](super::cpu)): Flex ran them as strided copies, a gather and three passes of products
//! and sums, a third of the attention's time at 4 x 512 tokens. Each is one parallel pass here,
//! with the values of the device path bit for bit (the same products, summed in the same order).

use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use super::attention::AttentionSpec;
use super::cpu::{f32_values, tensor_of, CpuBackend};
use super::rope::PositionEmbeddings;

/// RoPE's tables as [`split_heads`] applies them, for `seq` positions of width `d`.
pub(crate) struct HostRope {
    /// Whether the tables have one row per sequence (a padded batch) rather than one shared.
    per_sequence: bool,
    /// `cos`, `[rows, seq, d]` row-major.
    cos: Vec<f32>,
    /// `sin` with `rotate_half`'s sign: its first `d - d / 2` columns negated.
    signed_sin: Vec<f32>,
    /// For each column, the column `rotate_half` moves there.
    source: Vec<usize>,
}

impl HostRope {
    /// The tables of `position_embeddings` when `B` is a CPU backend and they are f32.
    pub(crate) fn of<B: Backend>(position_embeddings: &PositionEmbeddings<B>) -> Option<Self> {
        let PositionEmbeddings { cos, sin } = position_embeddings;
        let f32 = cos.dtype() == DType::F32 && sin.dtype() == DType::F32;
        CpuBackend::of::<B>(&cos.device()).filter(|_| f32)?;
        let [rows, _, d] = cos.dims();
        let half = d / 2;
        let cos = f32_values(cos.clone());
        let signed_sin = f32_values(sin.clone())
            .chunks(d.max(1))
            .flat_map(|row| {
                row.iter()
                    .enumerate()
                    .map(move |(j, s)| if j < d - half { s * -1.0 } else { s * 1.0 })
            })
            .collect();
        let source = (half..d).chain(0..half).collect();
        Some(Self { per_sequence: rows > 1, cos, signed_sin, source })
    }
}

/// `x [b, s, heads * d]` as heads `[b, heads, s, d]`, contiguous (`.view(b, s, -1, d)
/// .transpose(1, 2)`), with `rope` applied when given: `x * cos + rotate_half(x) * sin`, as
/// `x * cos + x[source] * signed_sin`. The caller checked that the host kernels take `x`.
pub(crate) fn split_heads<B: Backend>(
    x: Tensor<B, 3>,
    heads: usize,
    d: usize,
    rope: Option<&HostRope>,
) -> Tensor<B, 4> {
    let device = x.device();
    let [batch, seq, width] = x.dims();
    let src = f32_values(x);
    let columns = Columns::new(&src, [batch, seq, width]);
    tensor_of(
        columns.heads(0, heads, d, rope),
        [batch, heads, seq, d],
        &device,
    )
}

/// [`split_heads`] of a fused projection's q, k and v columns (`qkv [b, s, q_size + 2 *
/// kv_size]`), read from its one buffer: RoPE on q and k.
pub(crate) fn split_fused_heads<B: Backend>(
    qkv: Tensor<B, 3>,
    spec: &AttentionSpec,
    rope: Option<&HostRope>,
) -> [Tensor<B, 4>; 3] {
    let device = qkv.device();
    let [batch, seq, width] = qkv.dims();
    let src = f32_values(qkv);
    let columns = Columns::new(&src, [batch, seq, width]);
    let (heads, kv_heads, d) = (
        spec.num_attention_heads,
        spec.num_key_value_heads,
        spec.head_dim,
    );
    let (q_size, kv_size) = (spec.q_size(), spec.kv_size());
    [
        (0, heads, rope),
        (q_size, kv_heads, rope),
        (q_size + kv_size, kv_heads, None),
    ]
    .map(|(offset, heads, rope)| {
        tensor_of(
            columns.heads(offset, heads, d, rope),
            [batch, heads, seq, d],
            &device,
        )
    })
}

/// A row-major `[batch, seq, width]` buffer whose column ranges hold heads.
struct Columns<'a> {
    src: &'a [f32],
    batch: usize,
    seq: usize,
    width: usize,
}

impl<'a> Columns<'a> {
    fn new(src: &'a [f32], [batch, seq, width]: [usize; 3]) -> Self {
        Self { src, batch, seq, width }
    }

    /// The `heads` heads of width `d` from column `offset` on, as `[batch, heads, seq, d]`
    /// values, RoPE applied when given.
    fn heads(&self, offset: usize, heads: usize, d: usize, rope: Option<&HostRope>) -> Vec<f32> {
        let (seq, width) = (self.seq, self.width);
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

/// Heads `x [b, heads, s, d]` merged back to `[b, s, heads * d]` (`.transpose(1, 2)
/// .reshape(b, s, -1)`). The caller checked that the host kernels take `x`.
pub(crate) fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
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

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    use super::*;
    use crate::common::attention::rotary_rows;
    use crate::common::{RopeParameters, RotaryEmbedding};

    type B = NdArray;

    #[test]
    fn split_with_rope_and_merge_are_the_device_path_bit_for_bit() {
        let device = Default::default();
        let (batch, seq, heads, d) = (2, 5, 3, 6);
        let x = Tensor::<B, 3>::random([batch, seq, heads * d], Distribution::Default, &device);
        let params = RopeParameters::from_config_json(&Default::default(), 64).unwrap();
        let rope = RotaryEmbedding::new(&params, d);
        let pe = rope.forward::<B>(seq, &device);
        let host = HostRope::of(&pe).expect("NdArray f32 tables");

        let split = split_heads(x.clone(), heads, d, Some(&host));
        let viewed = x.clone().reshape([batch, seq, heads, d]).swap_dims(1, 2);
        split
            .to_data()
            .assert_eq(&rotary_rows(viewed.clone(), &pe).to_data(), true);
        let plain = split_heads(x.clone(), heads, d, None);
        plain.to_data().assert_eq(&viewed.clone().to_data(), true);

        let merged = merge_heads(plain);
        merged.to_data().assert_eq(&x.to_data(), true);
    }

    #[test]
    fn fused_split_is_the_split_of_each_view() {
        let device = Default::default();
        let spec = AttentionSpec::new(12, 4).with_kv_heads(2).with_head_dim(4);
        let (batch, seq) = (2, 3);
        let width = spec.q_size() + 2 * spec.kv_size();
        let qkv = Tensor::<B, 3>::random([batch, seq, width], Distribution::Default, &device);
        let params = RopeParameters::from_config_json(&Default::default(), 64).unwrap();
        let pe = RotaryEmbedding::new(&params, spec.head_dim).forward::<B>(seq, &device);
        let host = HostRope::of(&pe).expect("NdArray f32 tables");
        let fused = split_fused_heads(qkv.clone(), &spec, Some(&host));
        let [q, k, v] = crate::common::split_qkv(qkv, &spec);
        let d = spec.head_dim;
        let (heads, kv_heads) = (spec.num_attention_heads, spec.num_key_value_heads);
        let separate = [
            split_heads(q, heads, d, Some(&host)),
            split_heads(k, kv_heads, d, Some(&host)),
            split_heads(v, kv_heads, d, None),
        ];
        for (fused, separate) in fused.iter().zip(&separate) {
            fused.to_data().assert_eq(&separate.to_data(), true);
        }
    }
}
