//! The slot interfaces of BERT's classes: each is built from the original's constructor
//! arguments (`config`, and the context that builds its own slots) and has its `forward`.

use burn::prelude::*;
use patcher_burn::BuildContext;
use patcher_derive::slot_interface;

use super::BertConfig;

/// A `[batch, 1, seq, seq]` mask, `true` where a query may not attend a key (padding).
pub type BertMask<B> = Tensor<B, 4, Bool>;

/// Classes that fill `BertModel.embeddings`: `BertEmbeddings` and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertEmbeddingsInterface<B: Backend> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
    /// `input_ids`, `token_type_ids [batch, seq]` (positions `0..seq`) to `[batch, seq, hidden]`.
    fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3>;
}

/// Classes that fill `BertAttention.self`: `BertSelfAttention` and its replacements (e.g.
/// [`FusedQKVBertSelfAttention`](crate::replacements::FusedQKVBertSelfAttention)).
#[slot_interface(crate = "patcher_burn")]
pub trait BertSelfAttentionInterface<B: Backend> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
    /// `[batch, seq, hidden]` to the attention's merged heads, `[batch, seq, hidden]`.
    fn forward(&self, hidden_states: Tensor<B, 3>, mask: Option<&BertMask<B>>) -> Tensor<B, 3>;
}

/// What `BertSelfOutput` and `BertOutput` compute: dense, then LayerNorm of the sum with the
/// residual; `hidden_states [batch, seq, d_in]`, `input_tensor [batch, seq, hidden]`.
pub trait BertResidualForward<B: Backend> {
    /// `LayerNorm(dense(hidden_states) + input_tensor)`.
    fn forward(&self, hidden_states: Tensor<B, 3>, input_tensor: Tensor<B, 3>) -> Tensor<B, 3>;
}

/// What `BertAttention` and `BertLayer` compute: `[batch, seq, hidden]` to the same.
pub trait BertBlockForward<B: Backend> {
    /// The block on `hidden_states`, attending as `mask` allows.
    fn forward(&self, hidden_states: Tensor<B, 3>, mask: Option<&BertMask<B>>) -> Tensor<B, 3>;
}

/// Classes that fill `BertAttention.output`: `BertSelfOutput` and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertSelfOutputInterface<B: Backend>: BertResidualForward<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertLayer.output`: `BertOutput` and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertOutputInterface<B: Backend>: BertResidualForward<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertLayer.attention`: `BertAttention` and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertAttentionInterface<B: Backend>: BertBlockForward<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertEncoder.layer`: `BertLayer` and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertLayerInterface<B: Backend>: BertBlockForward<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `BertLayer.intermediate`: `BertIntermediate` and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertIntermediateInterface<B: Backend> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
    /// `[batch, seq, hidden]` to `act(dense(x))`, `[batch, seq, intermediate]`.
    fn forward(&self, hidden_states: Tensor<B, 3>) -> Tensor<B, 3>;
}

/// Classes that fill `BertModel.pooler`: `BertPooler` and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait BertPoolerInterface<B: Backend> {
    /// `Class::new(config, ctx)`.
    fn new(config: &BertConfig, ctx: &BuildContext<'_, B>) -> Self;
    /// `[batch, seq, hidden]` to `tanh(dense(x[:, 0]))`, `[batch, hidden]`.
    fn forward(&self, hidden_states: Tensor<B, 3>) -> Tensor<B, 2>;
}
