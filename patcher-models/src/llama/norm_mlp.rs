//! `LlamaRMSNorm` and `LlamaMLP`.

use burn::prelude::*;
use patcher_burn::layers::{InitSlot, LinearSlot};
use patcher_burn::BuildContext;

use super::config::LlamaConfig;
use patcher_derive::Patchable;

use super::interfaces::LlamaMLPInterface;
use crate::common::{gated_mlp, gated_mlp_projections, rms_norm_class, Activation, FeedForward};

rms_norm_class!(LlamaRMSNorm);

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

impl<B: Backend> FeedForward<B> for LlamaMLP<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }

    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward(x)
    }
}
