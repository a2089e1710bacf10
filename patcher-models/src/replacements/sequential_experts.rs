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
    gated_mlp, gated_mlp_projections, routed_experts_forward, Activation, ExpertsInterface,
    ExpertsSpec, MlpSpec, MoeExperts, TokenLayout,
};

/// One expert: `down(act(gate(x)) * up(x))`, no biases (the seed's `ExpertMlp`).
#[derive(Module, Debug)]
pub struct ExpertMlp<B: Backend> {
    /// `hidden -> expert_intermediate`.
    pub gate_proj: Linear<B>,
    /// `hidden -> expert_intermediate`.
    pub up_proj: Linear<B>,
    /// `expert_intermediate -> hidden`.
    pub down_proj: Linear<B>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> ExpertMlp<B> {
    /// One routed expert of `shape`.
    pub fn new(spec: &ExpertsSpec, device: &B::Device) -> Self {
        let mlp = MlpSpec {
            hidden_size: spec.hidden_size,
            intermediate_size: spec.intermediate_size,
            bias: false,
            hidden_act: spec.hidden_act,
            initializer_range: spec.initializer_range,
        };
        let [gate_proj, up_proj, down_proj] = gated_mlp_projections(&mlp).map(|c| c.init(device));
        Self { gate_proj, up_proj, down_proj, act_fn: spec.hidden_act }
    }

    /// `[n, hidden] -> [n, hidden]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let projections: [&dyn LinearLayer<B>; 3] =
            [&self.gate_proj, &self.up_proj, &self.down_proj];
        gated_mlp(projections, self.act_fn, x)
    }
}

/// The experts as a list of [`ExpertMlp`]s, at the slot's own path. Fills the experts slot of
/// every mixture-of-experts family ([`ExpertsInterface`]): `Qwen2MoeSparseMoeBlock.experts`,
/// `MixtralSparseMoeBlock.experts`, a user's.
#[derive(Patchable, Debug, Clone)]
#[patchable(crate = "patcher_burn", transparent, implements(ExpertsInterface))]
pub struct SequentialExperts<B: Backend> {
    experts: Vec<ExpertMlp<B>>,
}

impl<B: Backend> SequentialExperts<B> {
    /// Built from the same arguments as the fused experts it replaces: one [`ExpertMlp`] per
    /// routed expert.
    pub fn new(spec: &ExpertsSpec, device: &B::Device) -> Self {
        let experts = (0..spec.num_experts).map(|_| ExpertMlp::new(spec, device));
        Self { experts: experts.collect() }
    }

    /// The experts, by index.
    pub fn experts(&self) -> &[ExpertMlp<B>] {
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
