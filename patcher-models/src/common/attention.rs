//! The attention computation every attention class shares once q/k/v are projected: head
//! split, RoPE, grouped-query `repeat_kv`, eager scaled dot-product with the mask, softmax in
//! f32, head merge. Mirrors transformers' `eager_attention_forward` and the attention classes'
//! `forward` between the projections.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::DType;

#[cfg(doc)]
use super::rope::apply_rotary_pos_emb;
use super::rope::PositionEmbeddings;

/// The shape of an attention layer, as every attention class (original or replacement) reads it
/// from its model's config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    /// Model width (input of q/k/v, output of o).
    pub hidden_size: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (fewer than query heads for grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Whether q/k/v projections have a bias.
    pub qkv_bias: bool,
    /// Whether the output projection has a bias.
    pub o_bias: bool,
    /// Standard deviation of the normal init of weights (`initializer_range`).
    pub initializer_range: f64,
    /// Sliding window of this layer, if it is a sliding-attention layer.
    pub sliding_window: Option<usize>,
}

impl AttentionSpec {
    /// Output width of the query projection.
    pub fn q_size(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Output width of the key (and value) projection.
    pub fn kv_size(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// `head_dim ** -0.5`, as transformers computes it (in double, used as a scalar).
    pub fn scaling(&self) -> f64 {
        (self.head_dim as f64).powf(-0.5)
    }
}

/// Repeats each KV head `n_rep` times: `[b, kv, s, d] -> [b, kv * n_rep, s, d]`, head `h` of the
/// output being KV head `h / n_rep` (transformers' `repeat_kv`).
pub fn repeat_kv<B: Backend>(hidden_states: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return hidden_states;
    }
    let [batch, kv_heads, seq, head_dim] = hidden_states.dims();
    hidden_states
        .unsqueeze_dim::<5>(2)
        .expand([batch, kv_heads, n_rep, seq, head_dim])
        .reshape([batch, kv_heads * n_rep, seq, head_dim])
}

/// The boolean mask of causal attention, `[1, 1, seq, seq]`, `true` where a query may **not**
/// attend a key: keys after the query, and, with a sliding window `w`, keys `w` or more
/// positions before it (transformers' `causal_mask_function` and `sliding_window_overlay`).
pub fn causal_mask<B: Backend>(
    seq_len: usize,
    sliding_window: Option<usize>,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let mut masked = Vec::with_capacity(seq_len * seq_len);
    for q in 0..seq_len {
        for k in 0..seq_len {
            let future = k > q;
            let too_far = sliding_window.is_some_and(|w| q >= k + w);
            masked.push(future || too_far);
        }
    }
    Tensor::from_data(TensorData::new(masked, [1, 1, seq_len, seq_len]), device)
}

/// Attention from projected `q [b, s, H*d]`, `k`/`v [b, s, KV*d]` to the merged heads
/// `[b, s, H*d]` (before the output projection).
///
/// The values are transformers' (`eager_attention_forward` after `apply_rotary_pos_emb` and
/// `repeat_kv`); the steps are arranged so that the CPU backends run them on contiguous data:
/// RoPE on each head's `[seq * head_dim]` row (the tables broadcast as whole rows), grouped-query
/// heads as a `[b, KV, n_rep, ...]` batch against their KV head broadcast (no `repeat_kv` copy),
/// and the mask added as a `0` / `-inf` bias row.
pub fn eager_attention<B: Backend>(
    spec: &AttentionSpec,
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    position_embeddings: &PositionEmbeddings<B>,
    attention_mask: Option<&Tensor<B, 4, Bool>>,
) -> Tensor<B, 3> {
    let [batch, seq, _] = q.dims();
    let d = spec.head_dim;
    let (heads, kv_heads) = (spec.num_attention_heads, spec.num_key_value_heads);
    let n_rep = heads / kv_heads;
    // `.view(b, s, -1, d).transpose(1, 2)`
    let split = |x: Tensor<B, 3>, heads: usize| x.reshape([batch, seq, heads, d]).swap_dims(1, 2);
    let q = rotary_rows(split(q, heads), position_embeddings);
    let k = rotary_rows(split(k, kv_heads), position_embeddings);
    let v = split(v, kv_heads);

    // Query head `g * n_rep + r` attends with KV head `g` (transformers' `repeat_kv`), as a
    // batch `[b, KV, n_rep]` against `[b, KV, 1]` expanded.
    let q = q.reshape([batch, kv_heads, n_rep, seq, d]);
    let group = |x: Tensor<B, 4>| {
        x.unsqueeze_dim::<5>(2)
            .expand([batch, kv_heads, n_rep, seq, d])
    };
    let k = group(k);
    let v = group(v);

    let dtype = q.dtype();
    let scores = q.matmul(k.swap_dims(3, 4)) * spec.scaling();
    let scores = match attention_mask {
        Some(mask) => add_mask(scores, mask, heads),
        None => scores,
    };
    let weights = softmax(scores.cast(DType::F32), 4).cast(dtype);
    weights
        .matmul(v)
        .reshape([batch, heads, seq, d])
        .swap_dims(1, 2)
        .reshape([batch, seq, heads * d])
}

/// RoPE on `x [b, heads, seq, head_dim]`, each head's `seq * head_dim` values as one contiguous
/// row so that the `cos`/`sin` tables broadcast as whole rows: the values of
/// [`apply_rotary_pos_emb`] (`x * cos + rotate_half(x) * sin`). Returns a contiguous tensor.
fn rotary_rows<B: Backend>(
    x: Tensor<B, 4>,
    position_embeddings: &PositionEmbeddings<B>,
) -> Tensor<B, 4> {
    let [batch, heads, seq, d] = x.dims();
    let rows = x.reshape([batch * heads, seq * d]);
    let half = d / 2;
    let halves = rows.clone().reshape([batch * heads * seq, d]);
    let x1 = halves.clone().narrow(1, 0, half);
    let x2 = halves.narrow(1, half, d - half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 1).reshape([batch * heads, seq * d]);
    let cos = position_embeddings.cos.clone().reshape([1, seq * d]);
    let sin = position_embeddings.sin.clone().reshape([1, seq * d]);
    (rows * cos + rotated * sin).reshape([batch, heads, seq, d])
}

/// `scores [b, KV, n_rep, seq, seq]` with `-inf` where `mask [1 or b, 1, seq, seq]` is `true`:
/// the mask becomes a `0` / `-inf` bias, added (one row for every head when the mask is shared
/// by the batch). transformers adds the dtype's minimum; any value that underflows exp() to 0
/// after the max subtraction gives the same softmax, and -inf stays correct in half precision.
fn add_mask<B: Backend>(
    scores: Tensor<B, 5>,
    mask: &Tensor<B, 4, Bool>,
    heads: usize,
) -> Tensor<B, 5> {
    let shape = scores.dims();
    let [batch, _, _, q_len, k_len] = shape;
    let [mask_batch, _, _, _] = mask.dims();
    let bias = Tensor::<B, 4>::zeros(mask.dims(), &mask.device())
        .mask_fill(mask.clone(), f32::NEG_INFINITY)
        .cast(scores.dtype());
    if mask_batch == 1 {
        let rows = scores.reshape([batch * heads, q_len * k_len]);
        (rows + bias.reshape([1, q_len * k_len])).reshape(shape)
    } else {
        let scores = scores.reshape([batch, heads, q_len, k_len]);
        (scores + bias).reshape(shape)
    }
}
