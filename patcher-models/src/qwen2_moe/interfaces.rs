//! The slot interfaces of Qwen2-MoE: what its substitutable classes are built from (the
//! original's constructor arguments, as in transformers) and what they compute (the shared
//! forward traits of [`crate::common`]).

use burn::prelude::*;
use patcher_burn::BuildContext;
use patcher_derive::slot_interface;

use super::config::Qwen2MoeConfig;
use crate::common::{
    any_rank_forward, moe_layer_interfaces, DecoderAttention, FeedForward, MoeExperts,
};

/// Classes that fill `Qwen2MoeDecoderLayer.self_attn`: `Qwen2MoeAttention` and its replacements
/// (e.g. [`FusedQKVAttention`](crate::replacements::FusedQKVAttention)).
#[slot_interface(crate = "patcher_burn")]
pub trait Qwen2MoeAttentionInterface<B: Backend>: DecoderAttention<B> {
    /// `Class::new(config, layer_idx, ctx)`: the context builds the class's own slots and knows
    /// the device.
    fn new(config: &Qwen2MoeConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `Qwen2MoeSparseMoeBlock.experts`: `Qwen2MoeExperts` and its replacements
/// (e.g. [`SequentialExperts`](crate::replacements::SequentialExperts)).
#[slot_interface(crate = "patcher_burn")]
pub trait Qwen2MoeExpertsInterface<B: Backend>: MoeExperts<B> {
    /// `Class::new(config, device)`.
    fn new(config: &Qwen2MoeConfig, device: &B::Device) -> Self;
}

moe_layer_interfaces!(
    Qwen2MoeConfig,
    Qwen2MoeDecoderLayerInterface,
    Qwen2MoeSparseMoeBlockInterface,
    Qwen2MoeTopKRouterInterface
);

/// Classes that fill `Qwen2MoeSparseMoeBlock.shared_expert`: `Qwen2MoeMLP` and its
/// replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait Qwen2MoeMLPInterface<B: Backend>: FeedForward<B> {
    /// `Class::new(config, intermediate_size, device)`.
    fn new(config: &Qwen2MoeConfig, intermediate_size: usize, device: &B::Device) -> Self;
}

any_rank_forward!(Qwen2MoeMLPInterface<B>);
