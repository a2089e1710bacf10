//! `Qwen2MoeTopKRouter` and `Qwen2MoeSparseMoeBlock`: route each token to its top-k experts, add
//! the sigmoid-gated shared expert.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use patcher_burn::{BuildContext, Slot};

use super::config::Qwen2MoeConfig;
use super::experts::Qwen2MoeExperts;
use patcher_derive::Patchable;

use super::interfaces::{
    Qwen2MoeExpertsInterface, Qwen2MoeMLPInterface, Qwen2MoeSparseMoeBlockInterface,
    Qwen2MoeTopKRouterInterface,
};
use super::norm_mlp::Qwen2MoeMLP;
use crate::common::{linear, top_k_router_class, FeedForward};

top_k_router_class!(
    Qwen2MoeTopKRouter,
    Qwen2MoeConfig,
    Qwen2MoeTopKRouterInterface,
    num_experts,
    norm_topk_prob = norm_topk_prob
);

/// transformers' `Qwen2MoeSparseMoeBlock`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeSparseMoeBlockInterface))]
pub struct Qwen2MoeSparseMoeBlock<B: Backend> {
    /// The router: `Qwen2MoeTopKRouter` or its replacement.
    pub gate: Slot<B, dyn Qwen2MoeTopKRouterInterface<B>>,
    /// The routed experts: `Qwen2MoeExperts` or its replacement.
    pub experts: Slot<B, dyn Qwen2MoeExpertsInterface<B>>,
    /// The expert every token goes through: `Qwen2MoeMLP` or its replacement.
    pub shared_expert: Slot<B, dyn Qwen2MoeMLPInterface<B>>,
    /// `hidden -> 1`, its sigmoid scales the shared expert's output.
    pub shared_expert_gate: Linear<B>,
}

impl<B: Backend> Qwen2MoeSparseMoeBlock<B> {
    /// `Qwen2MoeSparseMoeBlock(config)`, the experts built through `ctx` (patched or not).
    pub fn new(config: &Qwen2MoeConfig, ctx: &BuildContext<'_, B>) -> Self {
        let device = ctx.device();
        Self {
            gate: Slot::build::<Qwen2MoeTopKRouter<B>>(ctx, config),
            experts: Slot::build::<Qwen2MoeExperts<B>>(ctx, config),
            shared_expert: Slot::build::<Qwen2MoeMLP<B>>(
                ctx,
                (config, config.shared_expert_intermediate_size),
            ),
            shared_expert_gate: linear(
                config.hidden_size,
                1,
                false,
                config.initializer_range,
                device,
            ),
        }
    }
}

impl<B: Backend> FeedForward<B> for Qwen2MoeSparseMoeBlock<B> {
    /// `[tokens, hidden] -> [tokens, hidden]` (3-D inputs are flattened to tokens first).
    fn forward_2d(&self, flat: Tensor<B, 2>) -> Tensor<B, 2> {
        let shared = self.shared_expert.forward(flat.clone());
        let routing = self.gate.forward(flat.clone());
        let experts =
            self.experts
                .forward(flat.clone(), routing.top_k_index, routing.top_k_weights);
        let shared = sigmoid(self.shared_expert_gate.forward(flat)) * shared;
        experts + shared
    }
}
