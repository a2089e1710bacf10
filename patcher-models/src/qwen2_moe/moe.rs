//! `Qwen2MoeTopKRouter` and `Qwen2MoeSparseMoeBlock`: route each token to its top-k experts, add
//! the sigmoid-gated shared expert.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::DType;
use patcher_burn::{BuildContext, Slot};

use patcher_derive::Patchable;

use super::config::Qwen2MoeConfig;
use super::experts::Qwen2MoeExperts;
use super::interfaces::{
    Qwen2MoeExpertsInterface, Qwen2MoeMLPInterface, Qwen2MoeSparseMoeBlockInterface,
    Qwen2MoeTopKRouterInterface,
};
use super::norm_mlp::Qwen2MoeMLP;
use crate::common::{linear, normal_param, torch_topk, FeedForward, MoeRouter, RouterOutput};

/// transformers' `Qwen2MoeTopKRouter`: a bare `weight [num_experts, hidden]` (PyTorch layout;
/// not an `nn.Linear`, so the checkpoint's `mlp.gate.weight` loads as is).
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeTopKRouterInterface))]
pub struct Qwen2MoeTopKRouter<B: Backend> {
    /// `[num_experts, hidden]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `k`.
    pub top_k: usize,
    /// Renormalise the top-k probabilities.
    pub norm_topk_prob: bool,
}

impl<B: Backend> Qwen2MoeTopKRouter<B> {
    /// `Qwen2MoeTopKRouter(config)`.
    pub fn new(config: &Qwen2MoeConfig, device: &B::Device) -> Self {
        Self {
            weight: normal_param(
                [config.num_experts, config.hidden_size],
                config.initializer_range,
                device,
            ),
            top_k: config.num_experts_per_tok,
            norm_topk_prob: config.norm_topk_prob,
        }
    }

    /// Softmax over the router logits in f32, top-k with PyTorch's CPU tie order, optional
    /// renormalisation.
    ///
    /// The selection runs on the host (see [`torch_topk`]); the weights are then gathered from
    /// the probabilities on the device, so they stay differentiable as in transformers.
    pub fn forward(&self, hidden_states: Tensor<B, 2>) -> RouterOutput<B> {
        let device = hidden_states.device();
        let router_logits = hidden_states.matmul(self.weight.val().transpose());
        let dtype = router_logits.dtype();
        let [tokens, experts] = router_logits.dims();
        let probs = softmax(router_logits.clone().cast(DType::F32), 1);
        let host: Vec<f32> = probs.to_data().iter::<f32>().collect();
        let k = self.top_k.min(experts);
        let mut index = Vec::with_capacity(tokens * k);
        for row in host.chunks(experts.max(1)).take(tokens) {
            index.extend(torch_topk(row, k).into_iter().map(|(_, i)| i as i64));
        }
        let top_k_index: Tensor<B, 2, Int> =
            Tensor::from_data(TensorData::new(index, [tokens, k]), &device);
        let mut top_k_weights = probs.gather(1, top_k_index.clone());
        if self.norm_topk_prob {
            top_k_weights = top_k_weights.clone() / top_k_weights.sum_dim(1);
        }
        RouterOutput {
            router_logits,
            top_k_weights: top_k_weights.cast(dtype),
            top_k_index,
        }
    }
}

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

impl<B: Backend> MoeRouter<B> for Qwen2MoeTopKRouter<B> {
    fn forward(&self, hidden_states: Tensor<B, 2>) -> RouterOutput<B> {
        Qwen2MoeTopKRouter::forward(self, hidden_states)
    }
}
