//! `Qwen2MoeRMSNorm` and `Qwen2MoeMLP` (the shared expert's class).

use burn::nn::Linear;
use burn::prelude::*;
use patcher_burn::layers::LinearLayer;

use super::config::Qwen2MoeConfig;
use patcher_derive::Patchable;

use super::interfaces::Qwen2MoeMLPInterface;
use crate::common::{gated_mlp, gated_mlp_projections, rms_norm_class, Activation, FeedForward};

rms_norm_class!(Qwen2MoeRMSNorm);

/// transformers' `Qwen2MoeMLP`: `down(act(gate(x)) * up(x))`, no biases.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeMLPInterface))]
pub struct Qwen2MoeMLP<B: Backend> {
    /// `hidden -> intermediate`.
    pub gate_proj: Linear<B>,
    /// `hidden -> intermediate`.
    pub up_proj: Linear<B>,
    /// `intermediate -> hidden`.
    pub down_proj: Linear<B>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> Qwen2MoeMLP<B> {
    /// `Qwen2MoeMLP(config, intermediate_size)`.
    pub fn new(config: &Qwen2MoeConfig, intermediate_size: usize, device: &B::Device) -> Self {
        let (h, std) = (config.hidden_size, config.initializer_range);
        let [gate_proj, up_proj, down_proj] =
            gated_mlp_projections(h, intermediate_size, false, std).map(|c| c.init(device));
        Self {
            gate_proj,
            up_proj,
            down_proj,
            act_fn: config.hidden_act,
        }
    }

    /// Applies the gated MLP to the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let projections: [&dyn LinearLayer<B>; 3] =
            [&self.gate_proj, &self.up_proj, &self.down_proj];
        gated_mlp(projections, self.act_fn, x)
    }
}

impl<B: Backend> FeedForward<B> for Qwen2MoeMLP<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }

    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward(x)
    }
}
