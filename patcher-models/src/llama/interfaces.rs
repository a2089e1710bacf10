//! The slot interface of Llama: what its substitutable attention is built from (the original's
//! constructor arguments, as in transformers) and what it computes ([`DecoderAttention`]).

use burn::prelude::*;
use patcher_burn::BuildContext;
use patcher_derive::slot_interface;

use super::config::LlamaConfig;
use crate::common::{any_rank_forward, DecoderAttention, DecoderLayer, FeedForward};

/// Classes that fill `LlamaDecoderLayer.self_attn`: `LlamaAttention` and its replacements
/// (e.g. [`FusedQKVAttention`](crate::replacements::FusedQKVAttention)).
#[slot_interface(crate = "patcher_burn")]
pub trait LlamaAttentionInterface<B: Backend>: DecoderAttention<B> {
    /// `Class::new(config, layer_idx, ctx)`: the context builds the class's own slots (its
    /// linears, say) and knows the device.
    fn new(config: &LlamaConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `LlamaModel.layers`: `LlamaDecoderLayer` and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait LlamaDecoderLayerInterface<B: Backend>: DecoderLayer<B> {
    /// `Class::new(config, layer_idx, ctx)`.
    fn new(config: &LlamaConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `LlamaDecoderLayer.mlp`: `LlamaMLP` and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait LlamaMLPInterface<B: Backend>: FeedForward<B> {
    /// `Class::new(config, ctx)`: the context builds the class's own linears.
    fn new(config: &LlamaConfig, ctx: &BuildContext<'_, B>) -> Self;
}

any_rank_forward!(LlamaMLPInterface<B>);
