//! What the sparse MoE families share between their classes: the top-k router's computation
//! (softmax in f32, top-k in PyTorch's tie order, optional renormalisation) and the eager loop
//! of fused experts (`gate_up_proj [E, 2I, H]`, `down_proj [E, H, I]`). The classes keep their
//! own names and parameters and call these.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::{DType, IndexingUpdateOp};

use super::activation::Activation;
use super::dispatch::ExpertDispatch;
use super::experts::fused_expert_mlp;
use super::init::normal_param;
use super::topk::torch_topk;

/// A router's output for `T` tokens.
#[derive(Debug, Clone)]
pub struct RouterOutput<B: Backend> {
    /// `[T, num_experts]`.
    pub router_logits: Tensor<B, 2>,
    /// `[T, k]`, in the logits' dtype.
    pub top_k_weights: Tensor<B, 2>,
    /// `[T, k]`.
    pub top_k_index: Tensor<B, 2, Int>,
}

/// transformers' `XxxTopKRouter.forward` with a bare `weight [num_experts, hidden]`: router
/// logits, softmax in f32, top-k with PyTorch's CPU tie order, renormalised to sum to 1 when
/// `norm_topk_prob`.
///
/// The selection runs on the host (see [`torch_topk`]); the weights are then gathered from the
/// probabilities on the device, so they stay differentiable as in transformers.
pub fn top_k_routing<B: Backend>(
    hidden_states: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    top_k: usize,
    norm_topk_prob: bool,
) -> RouterOutput<B> {
    let device = hidden_states.device();
    let router_logits = hidden_states.matmul(weight.transpose());
    let dtype = router_logits.dtype();
    let [tokens, experts] = router_logits.dims();
    let probs = softmax(router_logits.clone().cast(DType::F32), 1);
    let host: Vec<f32> = probs.to_data().iter::<f32>().collect();
    let k = top_k.min(experts);
    let mut index = Vec::with_capacity(tokens * k);
    for row in host.chunks(experts.max(1)).take(tokens) {
        index.extend(torch_topk(row, k).into_iter().map(|(_, i)| i as i64));
    }
    let top_k_index: Tensor<B, 2, Int> =
        Tensor::from_data(TensorData::new(index, [tokens, k]), &device);
    let mut top_k_weights = probs.gather(1, top_k_index.clone());
    if norm_topk_prob {
        top_k_weights = top_k_weights.clone() / top_k_weights.sum_dim(1);
    }
    RouterOutput {
        router_logits,
        top_k_weights: top_k_weights.cast(dtype),
        top_k_index,
    }
}

/// The fused experts' parameters `(gate_up_proj [E, 2I, H], down_proj [E, H, I])`,
/// normal-initialised.
pub fn fused_expert_params<B: Backend>(
    num_experts: usize,
    hidden: usize,
    intermediate: usize,
    std: f64,
    device: &B::Device,
) -> (Param<Tensor<B, 3>>, Param<Tensor<B, 3>>) {
    (
        normal_param([num_experts, 2 * intermediate, hidden], std, device),
        normal_param([num_experts, hidden, intermediate], std, device),
    )
}

/// transformers' eager loop over fused experts: for each expert that was hit, its tokens go
/// through `down(act(gate) * up)` (gate rows first in `gate_up_proj`), are scaled by their
/// routing weight and added to the output `[tokens, hidden]`.
pub fn fused_experts_forward<B: Backend>(
    gate_up_proj: Tensor<B, 3>,
    down_proj: Tensor<B, 3>,
    act_fn: Activation,
    hidden_states: Tensor<B, 2>,
    top_k_index: Tensor<B, 2, Int>,
    top_k_weights: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let device = hidden_states.device();
    let num_experts = gate_up_proj.dims()[0];
    let dispatch = ExpertDispatch::from_tensor(&top_k_index, num_experts);
    let mut output = hidden_states.zeros_like();
    for assignment in &dispatch.assignments {
        let tokens = assignment.token_tensor::<B>(&device);
        let state = hidden_states.clone().select(0, tokens.clone());
        let out = fused_expert_mlp(state, &gate_up_proj, &down_proj, assignment.expert, act_fn);
        let out = out * assignment.weights(&top_k_weights);
        output = output.select_assign(0, tokens, out, IndexingUpdateOp::Add);
    }
    output
}
