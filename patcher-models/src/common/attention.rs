//! The attention computation every attention class shares once q/k/v are projected: head
//! split, RoPE, grouped-query `repeat_kv`, eager scaled dot-product with the mask, softmax in
//! f32, head merge. Mirrors transformers' `eager_attention_forward` and the attention classes'
//! `forward` between the projections.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::DType;
use patcher_kernels::{HostBackend, HostHeads, HostRope};
use rayon::prelude::*;

use super::cache::LayerCache;
use super::layout::AttentionLayout;
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
    /// Multi-head attention over `hidden_size` features with `num_attention_heads` heads, as
    /// transformers' defaults have it: as many key/value heads, `head_dim = hidden_size /
    /// num_attention_heads`, no biases, weights initialised with a standard deviation of 0.02,
    /// full (not sliding) attention. The `with_*` methods change one field each.
    ///
    /// ```
    /// use patcher_models::common::AttentionSpec;
    ///
    /// // GPT-2's attention: biased q/k/v and output.
    /// let gpt2 = AttentionSpec::new(768, 12).with_qkv_bias(true).with_o_bias(true);
    /// assert_eq!((gpt2.head_dim, gpt2.q_size(), gpt2.kv_size()), (64, 768, 768));
    /// // Grouped-query attention with wider heads.
    /// let gqa = AttentionSpec::new(2048, 16).with_kv_heads(4).with_head_dim(256);
    /// assert_eq!((gqa.q_size(), gqa.kv_size()), (4096, 1024));
    /// ```
    pub fn new(hidden_size: usize, num_attention_heads: usize) -> Self {
        Self {
            hidden_size,
            num_attention_heads,
            num_key_value_heads: num_attention_heads,
            head_dim: hidden_size.checked_div(num_attention_heads).unwrap_or(0),
            qkv_bias: false,
            o_bias: false,
            initializer_range: 0.02,
            sliding_window: None,
        }
    }

    /// With `num_key_value_heads` key/value heads (grouped-query attention when fewer than the
    /// query heads).
    pub fn with_kv_heads(self, num_key_value_heads: usize) -> Self {
        Self { num_key_value_heads, ..self }
    }

    /// With heads `head_dim` wide (a config's explicit `head_dim`).
    pub fn with_head_dim(self, head_dim: usize) -> Self {
        Self { head_dim, ..self }
    }

    /// With (or without) biases on the q/k/v projections.
    pub fn with_qkv_bias(self, qkv_bias: bool) -> Self {
        Self { qkv_bias, ..self }
    }

    /// With (or without) a bias on the output projection.
    pub fn with_o_bias(self, o_bias: bool) -> Self {
        Self { o_bias, ..self }
    }

    /// With this standard deviation for the normal init of the weights.
    pub fn with_initializer_range(self, initializer_range: f64) -> Self {
        Self { initializer_range, ..self }
    }

    /// With this sliding window (`None`: full causal attention).
    pub fn with_sliding_window(self, sliding_window: Option<usize>) -> Self {
        Self { sliding_window, ..self }
    }

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
    let layout = AttentionLayout::contiguous(1, seq_len, 0);
    layout.mask(sliding_window, device).unwrap_or_else(|| {
        // A single position: nothing to hide.
        Tensor::<B, 4, Int>::zeros([1, 1, seq_len, seq_len], device).bool()
    })
}

/// What an attention layer receives in one forward besides its input: RoPE's tables (none for
/// models whose positions are added to the embeddings, as BERT's and GPT-2's), the mask
/// (`[1 or batch, 1, seq, cached + seq]`, `true` where a query may not attend a key; see
/// [`AttentionLayout::mask`](super::AttentionLayout::mask)) and the layer's share of the KV
/// cache, which takes the new keys and values.
pub struct AttentionInputs<'a, B: Backend> {
    /// `cos`/`sin` of the new tokens' positions.
    pub position_embeddings: Option<&'a PositionEmbeddings<B>>,
    /// Which keys each query may not attend.
    pub attention_mask: Option<&'a Tensor<B, 4, Bool>>,
    /// The layer's cached keys and values.
    pub cache: Option<&'a mut LayerCache<B>>,
}

impl<B: Backend> Default for AttentionInputs<'_, B> {
    fn default() -> Self {
        Self { position_embeddings: None, attention_mask: None, cache: None }
    }
}

impl<B: Backend> AttentionInputs<'_, B> {
    /// The same inputs, lent for a shorter call.
    pub fn reborrow(&mut self) -> AttentionInputs<'_, B> {
        AttentionInputs {
            position_embeddings: self.position_embeddings,
            attention_mask: self.attention_mask,
            cache: self.cache.as_deref_mut(),
        }
    }
}

/// Attention from projected `q [b, s, H*d]`, `k`/`v [b, s, KV*d]` to the merged heads
/// `[b, s, H*d]` (before the output projection), RoPE applied to q and k when the inputs have
/// position embeddings. The mask may differ per batch row (padding).
///
/// The values are transformers' (`eager_attention_forward` after `apply_rotary_pos_emb` and
/// `repeat_kv`), up to rounding. RoPE runs on each head's `[seq * head_dim]` row (the tables
/// broadcast as whole rows, bit for bit transformers' products). Then, on the CPU backends,
/// Burn's attention op computes the rest (see `fused_attention`), or on Flex
/// [`patcher_kernels::attention`]; elsewhere the steps run with grouped-query heads as a
/// `[b, KV, n_rep, ...]` batch against their KV head broadcast (no `repeat_kv` copy) and the mask
/// added as a `0` / `-inf` bias row. On the CPU backends the head split, RoPE and merge run on the host
/// ([`patcher_kernels::HostHeads`]), with the same values.
///
/// With a cache, the new keys and values (after RoPE) are appended to it and the queries attend
/// every cached position.
pub fn eager_attention<B: Backend>(
    spec: &AttentionSpec,
    qkv: [Tensor<B, 3>; 3],
    inputs: AttentionInputs<'_, B>,
) -> Tensor<B, 3> {
    attention_heads(spec, qkv, inputs)
}

/// [`eager_attention`] of a fused projection's output `qkv [b, s, q_size + 2 * kv_size]` (q's
/// columns, then k's, then v's: `FusedQKVAttention`'s `qkv_proj`, GPT-2's `c_attn`). On the CPU
/// backends the three are split into heads from the fused buffer in one pass; elsewhere they are
/// the [`split_qkv`] views.
pub fn fused_qkv_attention<B: Backend>(
    spec: &AttentionSpec,
    qkv: Tensor<B, 3>,
    mut inputs: AttentionInputs<'_, B>,
) -> Tensor<B, 3> {
    let dtypes = [qkv.dtype()];
    let counts = [spec.num_attention_heads, spec.num_key_value_heads];
    let heads = |host: HostHeads<B>, rope: Option<&HostRope>, qkv| {
        host.split_fused(qkv, counts, spec.head_dim, rope)
    };
    match host_attention(spec, &dtypes, qkv, heads, inputs.reborrow()) {
        Ok(out) => out,
        Err(qkv) => attention_heads(spec, split_qkv(qkv, spec), inputs),
    }
}

/// A fused projection's output `[b, s, q_size + 2 * kv_size]` as the views of its q, k and v
/// columns.
pub fn split_qkv<B: Backend>(qkv: Tensor<B, 3>, spec: &AttentionSpec) -> [Tensor<B, 3>; 3] {
    let (q_size, kv_size) = (spec.q_size(), spec.kv_size());
    [(0, q_size), (q_size, kv_size), (q_size + kv_size, kv_size)]
        .map(|(start, len)| qkv.clone().narrow(2, start, len))
}

/// On the CPU backends, with f32 inputs (`dtypes`) and f32 RoPE tables when given: the head
/// split (with RoPE) and merge on the host ([`HostHeads`]) around [`grouped_attention`]; `split`
/// makes the heads `[q, k, v]` from `inputs` and the tables. Otherwise `inputs` back.
fn host_attention<B: Backend, I>(
    spec: &AttentionSpec,
    dtypes: &[DType],
    inputs: I,
    split: impl FnOnce(HostHeads<B>, Option<&HostRope>, I) -> [Tensor<B, 4>; 3],
    inputs_of: AttentionInputs<'_, B>,
) -> Result<Tensor<B, 3>, I> {
    let AttentionInputs { position_embeddings, attention_mask, cache } = inputs_of;
    let Some(parts) = fused_attention::<B>() else {
        return Err(inputs);
    };
    // The dtype check first: RoPE tables are copied to the host only for a kernel that runs.
    let Some(host) = HostHeads::<B>::new(dtypes) else {
        return Err(inputs);
    };
    let rope = position_embeddings.map(|pe| HostRope::new(&pe.cos, &pe.sin));
    if rope.as_ref().is_some_and(Option::is_none) {
        return Err(inputs);
    }
    let [q, k, v] = split(host, rope.flatten().as_ref(), inputs);
    let [k, v] = with_cache(cache, k, v);
    let out = grouped_attention(q, k, v, attention_mask, spec.scaling(), parts);
    Ok(host.merge(out))
}

/// The keys and values to attend: `k`, `v` appended to the cache when there is one.
fn with_cache<B: Backend>(
    cache: Option<&mut LayerCache<B>>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
) -> [Tensor<B, 4>; 2] {
    match cache {
        Some(cache) => cache.update(k, v),
        None => [k, v],
    }
}

/// [`eager_attention`].
fn attention_heads<B: Backend>(
    spec: &AttentionSpec,
    [q, k, v]: [Tensor<B, 3>; 3],
    mut inputs: AttentionInputs<'_, B>,
) -> Tensor<B, 3> {
    let d = spec.head_dim;
    let (heads, kv_heads) = (spec.num_attention_heads, spec.num_key_value_heads);
    let split = |host: HostHeads<B>, rope: Option<&HostRope>, [q, k, v]: [Tensor<B, 3>; 3]| {
        [
            host.split(q, heads, d, rope),
            host.split(k, kv_heads, d, rope),
            host.split(v, kv_heads, d, None),
        ]
    };
    let dtypes = [q.dtype(), k.dtype(), v.dtype()];
    let [q, k, v] = match host_attention(spec, &dtypes, [q, k, v], split, inputs.reborrow()) {
        Ok(out) => return out,
        Err(qkv) => qkv,
    };
    let AttentionInputs { position_embeddings, attention_mask, cache } = inputs;
    let [batch, seq, _] = q.dims();
    let n_rep = heads / kv_heads;
    // `.view(b, s, -1, d).transpose(1, 2)`
    let split = |x: Tensor<B, 3>, heads: usize| {
        let x = x.reshape([batch, seq, heads, d]).swap_dims(1, 2);
        match position_embeddings {
            Some(position_embeddings) => rotary_rows(x, position_embeddings),
            None => x,
        }
    };
    let q = split(q, heads);
    let k = split(k, kv_heads);
    let v = v.reshape([batch, seq, kv_heads, d]).swap_dims(1, 2);
    let [k, v] = with_cache(cache, k, v);
    let kv_seq = k.dims()[2];
    let merge = |x: Tensor<B, 4>| x.swap_dims(1, 2).reshape([batch, seq, heads * d]);

    if let Some(parts) = fused_attention::<B>() {
        let out = grouped_attention(q, k, v, attention_mask, spec.scaling(), parts);
        return merge(out);
    }

    // Query head `g * n_rep + r` attends with KV head `g` (transformers' `repeat_kv`), as a
    // batch `[b, KV, n_rep]` against `[b, KV, 1]` expanded.
    let q = q.reshape([batch, kv_heads, n_rep, seq, d]);
    // `k^T` laid out row by row (`[b, KV, d, s]`, a small copy): the scores' matmul then reads
    // both operands in the order the CPU backends' GEMM packs them.
    let k_t = k
        .swap_dims(2, 3)
        .reshape([batch, kv_heads, 1, d, kv_seq])
        .expand([batch, kv_heads, n_rep, d, kv_seq]);
    let v = v
        .unsqueeze_dim::<5>(2)
        .expand([batch, kv_heads, n_rep, kv_seq, d]);

    let dtype = q.dtype();
    let scores = q.matmul(k_t) * spec.scaling();
    let scores = match attention_mask {
        Some(mask) => add_mask(scores, mask, heads),
        None => scores,
    };
    let weights = softmax(scores.cast(DType::F32), 4).cast(dtype);
    merge(weights.matmul(v).reshape([batch, heads, seq, d]))
}

/// Whether one attention op (scores, mask, softmax and the weighted sum in one call) replaces the
/// steps of [`eager_attention`], and in how many parallel parts Burn's op runs: on the CPU
/// backends. On Flex that op is [`patcher_kernels::attention`] (causal blocks, vectorised
/// softmax, its own threads) where it takes the inputs, else Burn's kernel, one pass
/// per head on one thread, so the heads are split over the rayon threads; NdArray's op is the
/// same steps, with its own threads. The GPU backends run the steps (their kernels are not
/// checked against transformers here).
fn fused_attention<B: Backend>() -> Option<usize> {
    match HostBackend::of::<B>()? {
        HostBackend::Flex => Some(rayon::current_num_threads()),
        _ => Some(1),
    }
}

/// `softmax(q @ k^T * scale + mask) @ v` for `q [b, H, s, d]` and `k`, `v [b, KV, s, d]` through
/// Burn's attention op, without `repeat_kv`'s copies: the `n_rep` query heads of each KV head are
/// stacked as one head of `n_rep * s` query rows (a free reshape of `q`, whose heads are ordered
/// `g * n_rep + r`), against their KV head as it is, the mask's rows stacked alike. The `b * KV`
/// stacked heads are split in `parts` run in parallel (a mask shared by the batch). On Flex, the
/// stacked heads halved the op's time at 4 x 512 tokens (its flash path, over 64-key tiles);
/// there [`patcher_kernels::attention`] (on the same stacked heads) takes over where it takes
/// the inputs (f32, a mask shared by the heads).
fn grouped_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4, Bool>>,
    scale: f64,
    parts: usize,
) -> Tensor<B, 4> {
    let options = AttentionModuleOptions { scale: Some(scale), softcap: None, is_causal: false };
    let [batch, heads, seq, d] = q.dims();
    let [_, kv_heads, kv_seq, _] = k.dims();
    let n_rep = heads / kv_heads;
    let rows = n_rep * seq;
    let q = q.reshape([batch, kv_heads, rows, d]);
    let (q, k, v) = match patcher_kernels::attention(q, k, v, mask, n_rep, scale) {
        Ok(out) => return out.reshape([batch, heads, seq, d]),
        Err(qkv) => qkv,
    };
    let mask = mask.map(|m| {
        let [mask_batch, _, _, keys] = m.dims();
        m.clone()
            .unsqueeze_dim::<5>(2)
            .expand([mask_batch, 1, n_rep, seq, keys])
            .reshape([mask_batch, 1, rows, keys])
    });
    let grouped = |out: Tensor<B, 4>| out.reshape([batch, heads, seq, d]);
    let n = batch * kv_heads;
    let parts = parts.min(n);
    if let Some(mask) = mask.as_ref().filter(|m| m.dims()[0] != 1) {
        // A mask per batch row (padding), spelled out per head rather than left to the op's
        // broadcasting; one call (the parts below share one mask row).
        let mask = mask.clone().expand([batch, kv_heads, rows, kv_seq]);
        return grouped(attention(q, k, v, Some(mask), None, options));
    }
    if parts <= 1 {
        return grouped(attention(q, k, v, mask, None, options));
    }
    let flat = |x: Tensor<B, 4>, rows: usize| x.reshape([1, n, rows, d]);
    let (q, k, v) = (flat(q, rows), flat(k, kv_seq), flat(v, kv_seq));
    let tasks: Vec<_> = (0..parts)
        .map(|i| {
            let (start, end) = (i * n / parts, (i + 1) * n / parts);
            let part = |x: &Tensor<B, 4>| x.clone().narrow(1, start, end - start);
            (part(&q), part(&k), part(&v), mask.clone())
        })
        .collect();
    let outs: Vec<Tensor<B, 4>> = tasks
        .into_par_iter()
        .map(|(q, k, v, mask)| attention(q, k, v, mask, None, options))
        .collect();
    grouped(Tensor::cat(outs, 1))
}

/// RoPE on `x [b, heads, seq, head_dim]`, each head's `seq * head_dim` values as one contiguous
/// row so that the `cos`/`sin` tables (`[1 or b, seq, head_dim]`) broadcast as whole rows: the
/// values of [`apply_rotary_pos_emb`] (`x * cos + rotate_half(x) * sin`), bit for bit.
/// `rotate_half(x) * sin` is computed as `x` with its halves swapped (a gather) times `sin` with
/// the first half negated: the same products, without the strided negation and concatenation
/// that the CPU backends run element by element. Returns a contiguous tensor.
pub(super) fn rotary_rows<B: Backend>(
    x: Tensor<B, 4>,
    position_embeddings: &PositionEmbeddings<B>,
) -> Tensor<B, 4> {
    let [batch, heads, seq, d] = x.dims();
    let rows = position_embeddings.cos.dims()[0];
    let device = x.device();
    let x = x.reshape([batch, heads, seq * d]);
    // `rotate_half` puts the second half (`d - d / 2` values) first, negated, then the first.
    let half = d / 2;
    let swap: Vec<i64> = (half..d).chain(0..half).map(|i| i as i64).collect();
    let swap = Tensor::<B, 1, Int>::from_data(TensorData::new(swap, [d]), &device);
    let swapped = x
        .clone()
        .reshape([batch * heads * seq, d])
        .select(1, swap)
        .reshape([batch, heads, seq * d]);
    let sign: Vec<f32> = (0..d)
        .map(|j| if j < d - half { -1.0 } else { 1.0 })
        .collect();
    let sign = Tensor::<B, 3>::from_data(TensorData::new(sign, [1, 1, d]), &device);
    let sin = position_embeddings.sin.clone() * sign;
    let cos = position_embeddings.cos.clone().reshape([rows, 1, seq * d]);
    let sin = sin.reshape([rows, 1, seq * d]);
    (x * cos + swapped * sin).reshape([batch, heads, seq, d])
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
