//! The interfaces a parent module calls on its substitutable children. The original class and
//! every replacement implement them, so a decoder layer does not know which class it holds.
//!
//! Signatures are transformers' `forward`s, minus the KV cache and minus outputs nobody reads
//! (the eager attention weights).

use burn::prelude::*;
use patcher_burn::layers::NormForward;
use patcher_derive::slot_interface;

use super::moe::RouterOutput;
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

/// The router of a mixture-of-experts block (`Qwen2MoeTopKRouter`, ...).
pub trait MoeRouter<B: Backend> {
    /// `hidden_states [tokens, hidden]` to each token's experts and weights.
    fn forward(&self, hidden_states: Tensor<B, 2>) -> RouterOutput<B>;
}

/// A block applied to the last dimension (an MLP, a sparse MoE block), for the ranks models use;
/// the trait objects of the interfaces built on it have a `forward` for any rank.
pub trait FeedForward<B: Backend> {
    /// `[tokens, hidden] -> [tokens, hidden]`.
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;

    /// `[batch, seq, hidden] -> [batch, seq, hidden]`; by default through
    /// [`forward_2d`](Self::forward_2d) on the flattened tokens.
    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dims = x.dims();
        self.forward_2d(x.reshape([dims[0] * dims[1], dims[2]]))
            .reshape(dims)
    }
}

/// The any-rank `forward` of an interface's trait object over [`FeedForward`] or
/// `NormForward`: `x [.., hidden] -> [.., hidden]`.
macro_rules! any_rank_forward {
    ($interface:path) => {
        impl<B: burn::prelude::Backend> dyn $interface + '_ {
            /// `[.., hidden] -> [.., hidden]`, whatever the class inside.
            pub fn forward<const D: usize>(
                &self,
                x: burn::prelude::Tensor<B, D>,
            ) -> burn::prelude::Tensor<B, D> {
                patcher_burn::layers::any_rank(x, |x| self.forward_2d(x), |x| self.forward_3d(x))
            }
        }
    };
}
pub(crate) use any_rank_forward;

/// The RMSNorms of the decoder families (`LlamaRMSNorm`, `Qwen2MoeRMSNorm`, and their
/// replacements): a norm over `hidden_size` features with an epsilon.
#[slot_interface(crate = "patcher_burn")]
pub trait DecoderNormInterface<B: Backend>: NormForward<B> {
    /// `Class::new(hidden_size, eps, device)`.
    fn new(hidden_size: usize, eps: f64, device: &B::Device) -> Self;
}

any_rank_forward!(DecoderNormInterface<B>);
