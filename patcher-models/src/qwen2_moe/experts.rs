//! `Qwen2MoeExperts`: all experts' weights fused in two 3-D parameters, in PyTorch layout, as
//! transformers 5 holds them in memory (the checkpoint's per-expert linears are merged by the
//! model's default conversions, see [`super::default_weight_conversions`]).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;

use patcher_derive::Patchable;

use super::config::Qwen2MoeConfig;
use super::interfaces::Qwen2MoeExpertsInterface;
use crate::common::{fused_expert_mlp, normal_param, Activation, ExpertDispatch, MoeExperts};

/// transformers' `Qwen2MoeExperts`.
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(Qwen2MoeExpertsInterface))]
pub struct Qwen2MoeExperts<B: Backend> {
    /// `[num_experts, 2 * moe_intermediate_size, hidden]`: each expert's gate rows, then up rows.
    pub gate_up_proj: Param<Tensor<B, 3>>,
    /// `[num_experts, hidden, moe_intermediate_size]`.
    pub down_proj: Param<Tensor<B, 3>>,
    #[module(skip)]
    act_fn: Activation,
}

impl<B: Backend> Qwen2MoeExperts<B> {
    /// `Qwen2MoeExperts(config)`.
    pub fn new(config: &Qwen2MoeConfig, device: &B::Device) -> Self {
        let (e, h, i) = (
            config.num_experts,
            config.hidden_size,
            config.moe_intermediate_size,
        );
        let std = config.initializer_range;
        Self {
            gate_up_proj: normal_param([e, 2 * i, h], std, device),
            down_proj: normal_param([e, h, i], std, device),
            act_fn: config.hidden_act,
        }
    }
}

impl<B: Backend> Qwen2MoeExpertsInterface<B> for Qwen2MoeExperts<B> {
    fn new(config: &Qwen2MoeConfig, device: &B::Device) -> Self {
        Qwen2MoeExperts::new(config, device)
    }
}

impl<B: Backend> MoeExperts<B> for Qwen2MoeExperts<B> {
    /// transformers' eager loop: for each expert that was hit, its tokens go through
    /// `down(act(gate) * up)`, are scaled by their routing weight and added to the output.
    fn forward(
        &self,
        hidden_states: Tensor<B, 2>,
        top_k_index: Tensor<B, 2, Int>,
        top_k_weights: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let device = hidden_states.device();
        let gate_up = self.gate_up_proj.val();
        let down = self.down_proj.val();
        let num_experts = gate_up.dims()[0];
        let dispatch = ExpertDispatch::from_tensor(&top_k_index, num_experts);
        let mut output = hidden_states.zeros_like();
        for assignment in &dispatch.assignments {
            let e = assignment.expert;
            let tokens = assignment.token_tensor::<B>(&device);
            let state = hidden_states.clone().select(0, tokens.clone());
            let out = fused_expert_mlp(state, &gate_up, &down, e, self.act_fn);
            let out = out * assignment.weights(&top_k_weights);
            output = output.select_assign(0, tokens, out, IndexingUpdateOp::Add);
        }
        output
    }
}
