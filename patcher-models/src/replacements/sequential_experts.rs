//! `SequentialExperts`: the seed's replacement for fused experts (`Qwen2MoeExperts`,
//! `MixtralExperts`), the experts as a list of standard gate/up/down linears (what quantisation
//! libraries expect), computing the same top-k mixture as the fused experts.
//!
//! The list sits directly at the slot's path, like PyTorch's `nn.ModuleList` subclass in the seed:
//! parameters are `mlp.experts.{e}.gate_proj.weight`, ..., Qwen2-MoE's checkpoint keys, so they
//! load with no conversion (the patcher filters out the fused-expert converters; Mixtral's
//! `w1`/`w3`/`w2` are renamed to them, see [`Patch::sequential_experts`](super::Patch::sequential_experts) on
//! Mixtral). Burn's
//! derive would insert the field name (`mlp.experts.experts.0...`); `#[patchable(transparent)]`
//! puts the list at the class's own path instead.

use burn::nn::Linear;
use burn::prelude::*;
use patcher_burn::layers::LinearLayer;

use patcher_derive::Patchable;

use crate::common::{
    gated_mlp, gated_mlp_projections, routed_experts_forward, Activation, DecoderConfig,
    MoeExperts, TokenLayout,
};
use crate::mixtral::{MixtralConfig, MixtralExpertsInterface};
use crate::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeExpertsInterface};

/// The shape of a family's routed experts, as its config gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpertsShape {
    /// Routed experts.
    pub num_experts: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of each expert.
    pub intermediate_size: usize,
    /// The experts' activation.
    pub hidden_act: Activation,
    /// Std of the normal weight init.
    pub initializer_range: f64,
}

impl ExpertsShape {
    /// `num_experts` experts of width `intermediate_size` in a model described by `core`.
    pub fn new(core: &DecoderConfig, num_experts: usize, intermediate_size: usize) -> Self {
        Self {
            num_experts,
            hidden_size: core.hidden_size,
            intermediate_size,
            hidden_act: core.hidden_act,
            initializer_range: core.initializer_range,
        }
    }
}

/// A config that describes a mixture of experts, so one replacement class serves several
/// families (implement it for your own family's config to use [`SequentialExperts`] there).
pub trait ExpertsConfig {
    /// The routed experts' shape.
    fn experts_shape(&self) -> ExpertsShape;
}

impl ExpertsConfig for Qwen2MoeConfig {
    fn experts_shape(&self) -> ExpertsShape {
        ExpertsShape::new(self, self.num_experts, self.moe_intermediate_size)
    }
}

impl ExpertsConfig for MixtralConfig {
    fn experts_shape(&self) -> ExpertsShape {
        ExpertsShape::new(self, self.num_local_experts, self.intermediate_size)
    }
}

/// One expert: `down(act(gate(x)) * up(x))`, no biases (the seed's `ExpertMLP`).
#[derive(Module, Debug)]
pub struct ExpertMLP<B: Backend> {
    /// `hidden -> expert_intermediate`.
    pub gate_proj: Linear<B>,
    /// `hidden -> expert_intermediate`.
    pub up_proj: Linear<B>,
    /// `expert_intermediate -> hidden`.
    pub down_proj: Linear<B>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> ExpertMLP<B> {
    /// One routed expert of `shape`.
    pub fn new(shape: &ExpertsShape, device: &B::Device) -> Self {
        let (h, i) = (shape.hidden_size, shape.intermediate_size);
        let [gate_proj, up_proj, down_proj] =
            gated_mlp_projections(h, i, false, shape.initializer_range).map(|c| c.init(device));
        Self {
            gate_proj,
            up_proj,
            down_proj,
            act_fn: shape.hidden_act,
        }
    }

    /// `[n, hidden] -> [n, hidden]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let projections: [&dyn LinearLayer<B>; 3] =
            [&self.gate_proj, &self.up_proj, &self.down_proj];
        gated_mlp(projections, self.act_fn, x)
    }
}

/// The experts as a list of [`ExpertMLP`]s, at the slot's own path. Fills
/// `Qwen2MoeSparseMoeBlock.experts` and `MixtralSparseMoeBlock.experts`.
#[derive(Patchable, Debug, Clone)]
#[patchable(
    crate = "patcher_burn",
    transparent,
    implements(Qwen2MoeExpertsInterface, MixtralExpertsInterface)
)]
pub struct SequentialExperts<B: Backend> {
    experts: Vec<ExpertMLP<B>>,
}

impl<B: Backend> SequentialExperts<B> {
    /// Built from the same arguments as the fused experts it replaces (`config`): one
    /// [`ExpertMLP`] per routed expert.
    pub fn new<C: ExpertsConfig>(config: &C, device: &B::Device) -> Self {
        let shape = config.experts_shape();
        Self {
            experts: (0..shape.num_experts)
                .map(|_| ExpertMLP::new(&shape, device))
                .collect(),
        }
    }

    /// The experts, by index.
    pub fn experts(&self) -> &[ExpertMLP<B>] {
        &self.experts
    }

    /// Number of experts.
    pub fn len(&self) -> usize {
        self.experts.len()
    }

    /// Whether there is no expert.
    pub fn is_empty(&self) -> bool {
        self.experts.is_empty()
    }
}

impl<B: Backend> MoeExperts<B> for SequentialExperts<B> {
    /// The same loop as the fused experts (same dispatch order, same weighting, same
    /// accumulation), each expert being its own linears.
    fn forward(
        &self,
        hidden_states: Tensor<B, 2>,
        top_k_index: Tensor<B, 2, Int>,
        top_k_weights: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        routed_experts_forward(
            hidden_states,
            top_k_index,
            top_k_weights,
            self.experts.len(),
            TokenLayout::Rows,
            |expert, x| self.experts[expert].forward(x),
        )
    }
}
