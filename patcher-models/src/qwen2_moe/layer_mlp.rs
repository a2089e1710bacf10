//! `Qwen2MoeLayerMlp`: what a `Qwen2MoeDecoderLayer`'s `mlp` holds, a sparse MoE block or a dense
//! MLP, as transformers decides per layer.

use burn::prelude::*;
use patcher_burn::{BuildContext, Slot};

use super::config::Qwen2MoeConfig;
use super::interfaces::{Qwen2MoeMLPInterface, Qwen2MoeSparseMoeBlockInterface};
use super::moe::Qwen2MoeSparseMoeBlock;
use super::norm_mlp::Qwen2MoeMLP;

/// `Qwen2MoeDecoderLayer.mlp`: a `Qwen2MoeSparseMoeBlock` on sparse layers, a `Qwen2MoeMLP` of
/// `intermediate_size` on the others (layers in `mlp_only_layers`, and all but every
/// `decoder_sparse_step`-th; see [`Qwen2MoeConfig::is_sparse_layer`]).
///
/// Both are slots, patched by their own class names. The variant adds nothing to parameter
/// paths (`layers.0.mlp.gate_proj.weight`, as in transformers), as Burn's `burn-store` does for
/// PyTorch checkpoints.
#[derive(Module, Debug)]
pub enum Qwen2MoeLayerMlp<B: Backend> {
    /// A sparse MoE block (`Qwen2MoeSparseMoeBlock` or its replacement).
    Sparse(Slot<B, dyn Qwen2MoeSparseMoeBlockInterface<B>>),
    /// A dense MLP (`Qwen2MoeMLP` or its replacement).
    Dense(Slot<B, dyn Qwen2MoeMLPInterface<B>>),
}

impl<B: Backend> Qwen2MoeLayerMlp<B> {
    /// Layer `layer_idx`'s MLP, built through `ctx` (patched or not).
    pub fn new(config: &Qwen2MoeConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        if config.is_sparse_layer(layer_idx) {
            Self::Sparse(Slot::build::<Qwen2MoeSparseMoeBlock<B>>(ctx, config))
        } else {
            let args = (config, config.intermediate_size);
            Self::Dense(Slot::build::<Qwen2MoeMLP<B>>(ctx, args))
        }
    }

    /// `[.., hidden] -> [.., hidden]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Sparse(block) => block.forward(x),
            Self::Dense(mlp) => mlp.forward(x),
        }
    }
}
