//! The key/value cache of decoding, transformers' `DynamicCache`: each layer keeps the keys and
//! values of every position seen so far (after RoPE), and a forward over new tokens appends
//! theirs and attends over all of them.
//!
//! Sliding-window layers keep every position too (transformers' `DynamicSlidingWindowLayer`
//! keeps only the last `sliding_window - 1`): the window is applied by the mask, so the
//! attention is the same; memory grows with the sequence as on full-attention layers.

use burn::prelude::*;

/// transformers' `DynamicCache`: one [`LayerCache`] per decoder layer, filled by forwards that
/// take it (`forward_cached`).
///
/// ```
/// use burn::backend::NdArray;
/// use patcher_models::common::KvCache;
///
/// let cache = KvCache::<NdArray>::new();
/// assert_eq!(cache.seq_len(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
}

impl<B: Backend> Default for KvCache<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> KvCache<B> {
    /// An empty cache (`DynamicCache()`).
    pub fn new() -> Self {
        Self { layers: Vec::new() }
    }

    /// Positions cached so far (`get_seq_length()`): what the next tokens' positions start from.
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::seq_len)
    }

    /// Rows of the batch cached (0 while empty).
    pub fn batch_size(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::batch_size)
    }

    /// The caches of `num_layers` layers, created empty on first use.
    pub fn layers_mut(&mut self, num_layers: usize) -> &mut [LayerCache<B>] {
        if self.layers.len() < num_layers {
            self.layers.resize_with(num_layers, LayerCache::default);
        }
        &mut self.layers[..num_layers]
    }

    /// Forgets every position (`reset()`).
    pub fn clear(&mut self) {
        self.layers.clear();
    }
}

/// One layer's cached keys and values, `[batch, kv_heads, positions, head_dim]` each.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    keys_values: Option<[Tensor<B, 4>; 2]>,
}

impl<B: Backend> Default for LayerCache<B> {
    fn default() -> Self {
        Self { keys_values: None }
    }
}

impl<B: Backend> LayerCache<B> {
    /// Positions cached.
    pub fn seq_len(&self) -> usize {
        self.keys_values.as_ref().map_or(0, |[k, _]| k.dims()[2])
    }

    /// Rows of the batch cached (0 while empty).
    pub fn batch_size(&self) -> usize {
        self.keys_values.as_ref().map_or(0, |[k, _]| k.dims()[0])
    }

    /// Appends the new positions' `keys` and `values` (`[batch, kv_heads, new, head_dim]`) and
    /// returns every position's (`DynamicLayer.update`).
    pub fn update(&mut self, keys: Tensor<B, 4>, values: Tensor<B, 4>) -> [Tensor<B, 4>; 2] {
        let all = match self.keys_values.take() {
            None => [keys, values],
            Some([past_k, past_v]) => [
                Tensor::cat(vec![past_k, keys], 2),
                Tensor::cat(vec![past_v, values], 2),
            ],
        };
        self.keys_values = Some(all.clone());
        all
    }
}
