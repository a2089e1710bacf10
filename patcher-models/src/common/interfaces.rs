//! The interfaces a parent module calls on its substitutable children, the same for every
//! family: what a class computes (`DecoderAttention`, `FeedForward`, `MoeExperts`, `MoeRouter`)
//! and what it is built from (the slot interfaces: a shape such as [`AttentionSpec`], not a
//! family's config). The original class and every replacement implement them, so a decoder layer
//! does not know which class it holds, and one replacement fills every family.
//!
//! A decoder layer and a sparse MoE block are built from their family's whole config, so their
//! slot interfaces are the family's own (`LlamaDecoderLayerInterface`, ...); what they compute
//! is shared ([`DecoderLayer`](super::DecoderLayer), [`FeedForward`]).
//!
//! Signatures are transformers' `forward`s, minus outputs nobody reads (the eager attention
//! weights).

use burn::prelude::*;
use patcher_burn::layers::{any_rank, NormForward};
use patcher_burn::BuildContext;
use patcher_derive::slot_interface;

use super::attention::{AttentionInputs, AttentionSpec};
use super::moe::RouterOutput;
use super::specs::{ExpertsSpec, MlpSpec, RouterSpec};

/// Self-attention of a decoder layer (`LlamaAttention`, `Qwen2MoeAttention`,
/// `FusedQKVAttention`, ...).
pub trait DecoderAttention<B: Backend> {
    /// `hidden_states [batch, seq, hidden]` to `[batch, seq, hidden]`, attending as `inputs`
    /// say (RoPE, mask) and through their cache ([`eager_attention`](super::eager_attention)
    /// does both).
    fn forward(&self, hidden_states: Tensor<B, 3>, inputs: AttentionInputs<'_, B>) -> Tensor<B, 3>;
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

/// Classes that fill an attention slot of any decoder family (`LlamaAttention`,
/// `Qwen2MoeAttention`, `MixtralAttention`,
/// [`FusedQkvAttention`](crate::replacements::FusedQkvAttention),
/// a user's): built from the layer's shape, so one replacement fills every family.
#[slot_interface(crate = "patcher_burn")]
pub trait AttentionInterface<B: Backend>: DecoderAttention<B> {
    /// `Class::new(spec, layer_idx, ctx)`: the context builds the class's own slots (its
    /// linears, say) and knows the device.
    fn new(spec: &AttentionSpec, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill a gated-MLP slot of any family (`LlamaMLP`, `Qwen2MoeMLP`, a user's).
#[slot_interface(crate = "patcher_burn")]
pub trait MlpInterface<B: Backend>: FeedForward<B> {
    /// `Class::new(spec, ctx)`: the context builds the class's own linears.
    fn new(spec: &MlpSpec, ctx: &BuildContext<'_, B>) -> Self;
}

impl<B: Backend> dyn MlpInterface<B> + '_ {
    /// `[.., hidden] -> [.., hidden]`, whatever the class inside.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        any_rank(x, |x| self.forward_2d(x), |x| self.forward_3d(x))
    }
}

/// Classes that fill the routed-experts slot of any mixture-of-experts family
/// (`Qwen2MoeExperts`, `MixtralExperts`,
/// [`SequentialExperts`](crate::replacements::SequentialExperts), a user's).
#[slot_interface(crate = "patcher_burn")]
pub trait ExpertsInterface<B: Backend>: MoeExperts<B> {
    /// `Class::new(spec, device)`.
    fn new(spec: &ExpertsSpec, device: &B::Device) -> Self;
}

/// Classes that fill the router slot of any mixture-of-experts family (`Qwen2MoeTopKRouter`,
/// `MixtralTopKRouter`, a user's).
#[slot_interface(crate = "patcher_burn")]
pub trait RouterInterface<B: Backend>: MoeRouter<B> {
    /// `Class::new(spec, device)`.
    fn new(spec: &RouterSpec, device: &B::Device) -> Self;
}

/// The RMSNorms of the decoder families (`LlamaRMSNorm`, `Qwen2MoeRMSNorm`, and their
/// replacements): a norm over `hidden_size` features with an epsilon.
#[slot_interface(crate = "patcher_burn")]
pub trait DecoderNormInterface<B: Backend>: NormForward<B> {
    /// `Class::new(hidden_size, eps, device)`.
    fn new(hidden_size: usize, eps: f64, device: &B::Device) -> Self;
}

impl<B: Backend> dyn DecoderNormInterface<B> + '_ {
    /// `[.., hidden] -> [.., hidden]`, whatever the class inside.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        any_rank(x, |x| self.forward_2d(x), |x| self.forward_3d(x))
    }
}
