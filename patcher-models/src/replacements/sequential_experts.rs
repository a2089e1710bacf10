//! `SequentialExperts`: the seed's replacement for `Qwen2MoeExperts`, the experts as a list of
//! standard gate/up/down linears (what quantisation libraries expect), computing the same top-k
//! mixture as the fused experts.
//!
//! The list sits directly at the slot's path, like PyTorch's `nn.ModuleList` subclass in the seed:
//! parameters are `mlp.experts.{e}.gate_proj.weight`, ..., exactly the checkpoint's keys, so they
//! load with no conversion (the patcher filters out the fused-expert converters). Burn's derive
//! would insert the field name (`mlp.experts.experts.0...`); `#[patchable(transparent)]` puts the
//! list at the class's own path instead.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use patcher_burn::layers::LinearLayer;

use patcher_derive::Patchable;

use crate::common::{gated_mlp, gated_mlp_projections, Activation, ExpertDispatch, MoeExperts};
use crate::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeExpertsInterface};

/// One expert: `down(act(gate(x)) * up(x))`, no biases (the seed's `ExpertMLP`).
#[derive(Module, Debug)]
pub struct ExpertMLP<B: Backend> {
    /// `hidden -> moe_intermediate`.
    pub gate_proj: Linear<B>,
    /// `hidden -> moe_intermediate`.
    pub up_proj: Linear<B>,
    /// `moe_intermediate -> hidden`.
    pub down_proj: Linear<B>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> ExpertMLP<B> {
    /// One routed expert of `config`.
    pub fn new(config: &Qwen2MoeConfig, device: &B::Device) -> Self {
        let (h, i) = (config.hidden_size, config.moe_intermediate_size);
        let [gate_proj, up_proj, down_proj] =
            gated_mlp_projections(h, i, false, config.initializer_range).map(|c| c.init(device));
        Self {
            gate_proj,
            up_proj,
            down_proj,
            act_fn: config.hidden_act,
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
/// `Qwen2MoeSparseMoeBlock.experts`.
#[derive(Patchable, Debug, Clone)]
#[patchable(
    crate = "patcher_burn",
    transparent,
    implements(Qwen2MoeExpertsInterface)
)]
pub struct SequentialExperts<B: Backend> {
    experts: Vec<ExpertMLP<B>>,
}

impl<B: Backend> SequentialExperts<B> {
    /// Built from the same arguments as `Qwen2MoeExperts` (`config`): `num_experts` experts.
    pub fn new(config: &Qwen2MoeConfig, device: &B::Device) -> Self {
        Self {
            experts: (0..config.num_experts)
                .map(|_| ExpertMLP::new(config, device))
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
    /// The same loop as `Qwen2MoeExperts` (same dispatch order, same weighting, same
    /// accumulation), each expert being its own linears.
    fn forward(
        &self,
        hidden_states: Tensor<B, 2>,
        top_k_index: Tensor<B, 2, Int>,
        top_k_weights: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let device = hidden_states.device();
        let dispatch = ExpertDispatch::from_tensor(&top_k_index, self.experts.len());
        let mut output = hidden_states.zeros_like();
        for assignment in &dispatch.assignments {
            let tokens = assignment.token_tensor::<B>(&device);
            let state = hidden_states.clone().select(0, tokens.clone());
            let out = self.experts[assignment.expert].forward(state);
            let out = out * assignment.weights(&top_k_weights);
            output = output.select_assign(0, tokens, out, IndexingUpdateOp::Add);
        }
        output
    }
}
