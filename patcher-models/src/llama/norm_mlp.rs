//! `LlamaRMSNorm` and `LlamaMLP`.

use burn::module::Param;
use burn::prelude::*;
use patcher_burn::layers::{InitSlot, LinearSlot, NormForward};
use patcher_burn::BuildContext;
use patcher_derive::Patchable;

use super::config::LlamaConfig;
use super::interfaces::LlamaMLPInterface;
use crate::common::{
    gated_mlp, gated_mlp_projections, ones_param, rms_norm, Activation, DecoderNormInterface,
    FeedForward,
};

/// transformers' `LlamaRMSNorm`: a `weight` (named as in the checkpoint) and an epsilon.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(DecoderNormInterface))]
pub struct LlamaRMSNorm<B: Backend> {
    /// Scale, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// `variance_epsilon`.
    pub variance_epsilon: f64,
}

impl<B: Backend> LlamaRMSNorm<B> {
    /// A norm over `hidden_size` features, weight at one.
    pub fn new(hidden_size: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: ones_param([hidden_size], device),
            variance_epsilon: eps,
        }
    }

    /// Normalises the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        rms_norm(x, self.weight.val(), self.variance_epsilon)
    }
}

/// transformers' `LlamaMLP`: `down(act(gate(x)) * up(x))`, biases when `mlp_bias`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(LlamaMLPInterface))]
pub struct LlamaMLP<B: Backend> {
    /// `hidden -> intermediate`.
    pub gate_proj: LinearSlot<B>,
    /// `hidden -> intermediate`.
    pub up_proj: LinearSlot<B>,
    /// `intermediate -> hidden`.
    pub down_proj: LinearSlot<B>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> LlamaMLP<B> {
    /// `LlamaMLP(config)`, its linears built through `ctx`.
    pub fn new(config: &LlamaConfig, ctx: &BuildContext<'_, B>) -> Self {
        let [gate_proj, up_proj, down_proj] = gated_mlp_projections(
            config.hidden_size,
            config.intermediate_size,
            config.mlp_bias,
            config.initializer_range,
        )
        .map(|c| c.init_slot(ctx));
        Self {
            gate_proj,
            up_proj,
            down_proj,
            act_fn: config.hidden_act,
        }
    }

    /// Applies the gated MLP to the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let projections = [&*self.gate_proj, &*self.up_proj, &*self.down_proj];
        gated_mlp(projections, self.act_fn, x)
    }
}

impl<B: Backend> NormForward<B> for LlamaRMSNorm<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }

    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward(x)
    }
}

impl<B: Backend> FeedForward<B> for LlamaMLP<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }

    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward(x)
    }
}
