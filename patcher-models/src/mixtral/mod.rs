//! Mixtral as transformers 5.23 writes it (`models/mixtral/modeling_mixtral.py`): same class
//! names, same parameter names, experts fused in memory (`mlp.experts.gate_up_proj`,
//! `mlp.experts.down_proj`), the router at `mlp.gate`. Hub checkpoints keep per-expert
//! `block_sparse_moe.experts.{e}.w1/w2/w3` and `block_sparse_moe.gate`:
//! [`default_weight_conversions`] renames and merges them, as transformers does.

mod config;
mod modules;

use burn::prelude::*;
use patcher_burn::BuildContext;
use patcher_core::ops::{Concatenate, MergeModulelist};
use patcher_core::{WeightConverter, WeightRenaming, WeightTransform};
use patcher_derive::slot_interface;

pub use config::MixtralConfig;
pub use modules::{
    MixtralAttention, MixtralDecoderLayer, MixtralExperts, MixtralForCausalLM, MixtralModel,
    MixtralRMSNorm, MixtralSparseMoeBlock, MixtralTopKRouter,
};

use crate::common::pretrained::pretrained_family;
use crate::common::{moe_layer_interfaces, DecoderAttention, MoeExperts};

/// Classes that fill `MixtralDecoderLayer.self_attn`: `MixtralAttention` and its replacements
/// (e.g. [`FusedQKVAttention`](crate::replacements::FusedQKVAttention)).
#[slot_interface(crate = "patcher_burn")]
pub trait MixtralAttentionInterface<B: Backend>: DecoderAttention<B> {
    /// `Class::new(config, layer_idx, ctx)`.
    fn new(config: &MixtralConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self;
}

/// Classes that fill `MixtralSparseMoeBlock.experts`: `MixtralExperts` and its replacements
/// (e.g. [`SequentialExperts`](crate::replacements::SequentialExperts)).
#[slot_interface(crate = "patcher_burn")]
pub trait MixtralExpertsInterface<B: Backend>: MoeExperts<B> {
    /// `Class::new(config, device)`.
    fn new(config: &MixtralConfig, device: &B::Device) -> Self;
}

moe_layer_interfaces! { MixtralConfig, MixtralDecoderLayerInterface,
MixtralSparseMoeBlockInterface, MixtralTopKRouterInterface }

/// transformers' `mapping["mixtral"]`: `.block_sparse_moe.` renamed to `.mlp.`, then
/// `.experts.*.w1.weight` + `.experts.*.w3.weight` -> `.experts.gate_up_proj` by
/// `MergeModulelist(dim=0)` and `Concatenate(dim=1)`, and `.experts.*.w2.weight` ->
/// `.experts.down_proj` by `MergeModulelist(dim=0)`.
pub fn default_weight_conversions() -> Vec<WeightTransform> {
    let gate_up = WeightConverter::new(
        [".experts.*.w1.weight", ".experts.*.w3.weight"],
        ".experts.gate_up_proj",
    )
    .op(MergeModulelist::new(0))
    .op(Concatenate::new(1));
    let down = WeightConverter::new(".experts.*.w2.weight", ".experts.down_proj")
        .op(MergeModulelist::new(0));
    let renaming = WeightRenaming::new(".block_sparse_moe.", ".mlp.").expect("a valid pattern");
    vec![renaming.into(), gate_up.into(), down.into()]
}

// The causal LM loads a checkpoint as is; the bare model loads its `model.` keys.
pretrained_family!(default_weight_conversions => MixtralForCausalLM, MixtralModel, MixtralConfig);
