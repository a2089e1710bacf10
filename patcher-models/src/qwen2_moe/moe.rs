//! `Qwen2MoeTopKRouter` and `Qwen2MoeSparseMoeBlock`: route each token to its top-k experts, add
//! the sigmoid-gated shared expert.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use patcher_burn::{BuildContext, Slot};

use super::config::Qwen2MoeConfig;
use super::experts::Qwen2MoeExperts;
use super::interfaces::Qwen2MoeExpertsInterface;
use super::norm_mlp::Qwen2MoeMLP;
use crate::common::{linear, top_k_router_class};

top_k_router_class!(
    Qwen2MoeTopKRouter,
    Qwen2MoeConfig,
    num_experts,
    norm_topk_prob = norm_topk_prob
);

/// transformers' `Qwen2MoeSparseMoeBlock`.
#[derive(Module, Debug)]
pub struct Qwen2MoeSparseMoeBlock<B: Backend> {
    /// The router.
    pub gate: Qwen2MoeTopKRouter<B>,
    /// The routed experts: `Qwen2MoeExperts` or its replacement.
    pub experts: Slot<B, dyn Qwen2MoeExpertsInterface<B>>,
    /// The expert every token goes through.
    pub shared_expert: Qwen2MoeMLP<B>,
    /// `hidden -> 1`, its sigmoid scales the shared expert's output.
    pub shared_expert_gate: Linear<B>,
}

impl<B: Backend> Qwen2MoeSparseMoeBlock<B> {
    /// `Qwen2MoeSparseMoeBlock(config)`, the experts built through `ctx` (patched or not).
    pub fn new(config: &Qwen2MoeConfig, ctx: &BuildContext<'_, B>) -> Self {
        let device = ctx.device();
        Self {
            gate: Qwen2MoeTopKRouter::new(config, device),
            experts: Slot::build::<Qwen2MoeExperts<B>>(ctx, config),
            shared_expert: Qwen2MoeMLP::new(config, config.shared_expert_intermediate_size, device),
            shared_expert_gate: linear(
                config.hidden_size,
                1,
                false,
                config.initializer_range,
                device,
            ),
        }
    }

    /// `[batch, seq, hidden] -> [batch, seq, hidden]`.
    pub fn forward(&self, hidden_states: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = hidden_states.dims();
        let flat = hidden_states.reshape([batch * seq, hidden]);
        let shared = self.shared_expert.forward(flat.clone());
        let routing = self.gate.forward(flat.clone());
        let experts =
            self.experts
                .forward(flat.clone(), routing.top_k_index, routing.top_k_weights);
        let shared = sigmoid(self.shared_expert_gate.forward(flat)) * shared;
        (experts + shared).reshape([batch, seq, hidden])
    }
}
