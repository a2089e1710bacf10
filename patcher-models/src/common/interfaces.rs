//! The interfaces a parent module calls on its substitutable children. The original class and
//! every replacement implement them, so a decoder layer does not know which class it holds.
//!
//! Signatures are transformers' `forward`s, minus the KV cache and minus outputs nobody reads
//! (the eager attention weights).

use burn::prelude::*;

use super::rope::PositionEmbeddings;

/// Self-attention of a decoder layer (`LlamaAttention`, `Qwen2MoeAttention`,
/// `FusedQKVAttention`, ...).
pub trait DecoderAttention<B: Backend> {
    /// `hidden_states [batch, seq, hidden]` to `[batch, seq, hidden]`.
    ///
    /// `attention_mask` is `[1 or batch, 1, seq, seq]`, `true` where attention is forbidden.
    fn forward(
        &self,
        hidden_states: Tensor<B, 3>,
        position_embeddings: &PositionEmbeddings<B>,
        attention_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3>;
}

/// The experts of a mixture-of-experts block (`Qwen2MoeExperts`, `SequentialExperts`, ...).
pub trait MoeExperts<B: Backend> {
    /// `hidden_states [tokens, hidden]`, with each token's `top_k_index [tokens, k]` and
    /// `top_k_weights [tokens, k]`, to the weighted sum of its experts' outputs `[tokens, hidden]`.
    fn forward(
        &self,
        hidden_states: Tensor<B, 2>,
        top_k_index: Tensor<B, 2, Int>,
        top_k_weights: Tensor<B, 2>,
    ) -> Tensor<B, 2>;
}
