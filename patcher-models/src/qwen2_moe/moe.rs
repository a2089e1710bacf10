//! Qwen2-MoE's sparse classes as transformers 5.23 writes them: the fused experts, the top-k
//! router, the sparse MoE block (routed experts plus a sigmoid-gated shared expert), and what a
//! decoder layer's `mlp` holds (a sparse block or a dense MLP).

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use patcher_burn::{BuildContext, Slot};
use patcher_derive::{slot_interface, Patchable};

use super::config::Qwen2MoeConfig;
use super::model::Qwen2MoeMlp;
use crate::common::{
    fused_expert_params, fused_experts_forward, linear, normal_param, top_k_routing, Activation,
    ExpertsInterface, ExpertsSpec, FeedForward, MlpInterface, MoeExperts, MoeRouter,
    RouterInterface, RouterOutput, RouterSpec,
};

/// transformers' `Qwen2MoeExperts`: every expert's weights fused in two 3-D parameters in
/// PyTorch layout, as transformers 5 holds them in memory (the checkpoint's per-expert linears
/// are merged by [`default_weight_conversions`](super::default_weight_conversions)).
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(ExpertsInterface))]
pub struct Qwen2MoeExperts<B: Backend> {
    /// `[num_experts, 2 * moe_intermediate_size, hidden]`: each expert's gate rows, then its up
    /// rows.
    pub gate_up_proj: Param<Tensor<B, 3>>,
    /// `[num_experts, hidden, moe_intermediate_size]`.
    pub down_proj: Param<Tensor<B, 3>>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> Qwen2MoeExperts<B> {
    /// `Qwen2MoeExperts(config)`.
    pub fn new(spec: &ExpertsSpec, device: &B::Device) -> Self {
        let (gate_up_proj, down_proj) = fused_expert_params(spec, device);
        let act_fn = spec.hidden_act;
        Self { gate_up_proj, down_proj, act_fn }
    }
}

impl<B: Backend> MoeExperts<B> for Qwen2MoeExperts<B> {
    fn forward(
        &self,
        hidden_states: Tensor<B, 2>,
        top_k_index: Tensor<B, 2, Int>,
        top_k_weights: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let (gate_up, down) = (self.gate_up_proj.val(), self.down_proj.val());
        fused_experts_forward(
            gate_up,
            down,
            self.act_fn,
            hidden_states,
            top_k_index,
            top_k_weights,
        )
    }
}

/// transformers' `Qwen2MoeTopKRouter`: a bare `weight [num_experts, hidden]` (not an
/// `nn.Linear`, so the checkpoint's `mlp.gate.weight` loads as is), softmax, top-k,
/// renormalised when `norm_topk_prob`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(RouterInterface))]
pub struct Qwen2MoeTopKRouter<B: Backend> {
    /// `[num_experts, hidden]`.
    pub weight: Param<Tensor<B, 2>>,
    #[module(skip)]
    spec: RouterSpec,
}

impl<B: Backend> Qwen2MoeTopKRouter<B> {
    /// `Qwen2MoeTopKRouter(config)`.
    pub fn new(spec: &RouterSpec, device: &B::Device) -> Self {
        let shape = [spec.num_experts, spec.hidden_size];
        let weight = normal_param(shape, spec.initializer_range, device);
        Self { weight, spec: *spec }
    }
}

impl<B: Backend> MoeRouter<B> for Qwen2MoeTopKRouter<B> {
    fn forward(&self, hidden_states: Tensor<B, 2>) -> RouterOutput<B> {
        let (k, norm) = (self.spec.top_k, self.spec.norm_topk_prob);
        top_k_routing(hidden_states, self.weight.val(), k, norm)
    }
}

/// Classes that fill `Qwen2MoeDecoderLayer.mlp` on sparse layers: [`Qwen2MoeSparseMoeBlock`]
/// and its replacements.
#[slot_interface(crate = "patcher_burn")]
pub trait Qwen2MoeSparseMoeBlockInterface<B: Backend>: FeedForward<B> {
    /// `Class::new(config, ctx)`.
    fn new(config: &Qwen2MoeConfig, ctx: &BuildContext<'_, B>) -> Self;
}

/// transformers' `Qwen2MoeSparseMoeBlock`: the routed experts' mixture plus the shared expert,
/// scaled by the sigmoid of its gate.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeSparseMoeBlockInterface))]
pub struct Qwen2MoeSparseMoeBlock<B: Backend> {
    /// The router: [`Qwen2MoeTopKRouter`] or its replacement.
    pub gate: Slot<B, dyn RouterInterface<B>>,
    /// The routed experts: [`Qwen2MoeExperts`] or its replacement.
    pub experts: Slot<B, dyn ExpertsInterface<B>>,
    /// The expert every token goes through: [`Qwen2MoeMlp`] or its replacement.
    pub shared_expert: Slot<B, dyn MlpInterface<B>>,
    /// `hidden -> 1`, its sigmoid scales the shared expert's output.
    pub shared_expert_gate: Linear<B>,
}

impl<B: Backend> Qwen2MoeSparseMoeBlock<B> {
    /// `Qwen2MoeSparseMoeBlock(config)`, its slots built through `ctx`.
    pub fn new(config: &Qwen2MoeConfig, ctx: &BuildContext<'_, B>) -> Self {
        let c = &config.core;
        let shared = config.mlp_spec(config.shared_expert_intermediate_size);
        Self {
            gate: Slot::build::<Qwen2MoeTopKRouter<B>>(ctx, &config.router_spec()),
            experts: Slot::build::<Qwen2MoeExperts<B>>(ctx, &config.experts_spec()),
            shared_expert: Slot::build::<Qwen2MoeMlp<B>>(ctx, &shared),
            shared_expert_gate: linear(c.hidden_size, 1, false, c.initializer_range, ctx.device()),
        }
    }
}

impl<B: Backend> FeedForward<B> for Qwen2MoeSparseMoeBlock<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let shared = self.shared_expert.forward(x.clone());
        let routing = self.gate.forward(x.clone());
        let routed = (self.experts).forward(x.clone(), routing.top_k_index, routing.top_k_weights);
        routed + sigmoid(self.shared_expert_gate.forward(x)) * shared
    }
}

/// `Qwen2MoeDecoderLayer.mlp`: a [`Qwen2MoeSparseMoeBlock`] on sparse layers, a [`Qwen2MoeMlp`]
/// of `intermediate_size` on the others (see [`Qwen2MoeConfig::is_sparse_layer`]).
///
/// Both are slots, patched by their own class names. The variant adds nothing to parameter
/// paths (`layers.0.mlp.gate_proj.weight`, as in transformers), as Burn's `burn-store` does for
/// PyTorch checkpoints.
#[derive(Module, Debug)]
pub enum Qwen2MoeLayerMlp<B: Backend> {
    /// A sparse MoE block ([`Qwen2MoeSparseMoeBlock`] or its replacement).
    Sparse(Slot<B, dyn Qwen2MoeSparseMoeBlockInterface<B>>),
    /// A dense MLP ([`Qwen2MoeMlp`] or its replacement).
    Dense(Slot<B, dyn MlpInterface<B>>),
}

impl<B: Backend> Qwen2MoeLayerMlp<B> {
    /// Layer `layer_idx`'s MLP, built through `ctx` (patched or not).
    pub fn new(config: &Qwen2MoeConfig, layer_idx: usize, ctx: &BuildContext<'_, B>) -> Self {
        if config.is_sparse_layer(layer_idx) {
            Self::Sparse(Slot::build::<Qwen2MoeSparseMoeBlock<B>>(ctx, config))
        } else {
            let dense = config.mlp_spec(config.core.intermediate_size);
            Self::Dense(Slot::build::<Qwen2MoeMlp<B>>(ctx, &dense))
        }
    }

    /// `[batch, seq, hidden] -> [batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Self::Sparse(block) => block.forward_3d(x),
            Self::Dense(mlp) => mlp.forward_3d(x),
        }
    }
}
