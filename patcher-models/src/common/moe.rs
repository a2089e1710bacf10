//! What the sparse MoE families share between their classes: the top-k router's computation
//! (softmax in f32, top-k in PyTorch's tie order, optional renormalisation) and the eager loop
//! of fused experts (`gate_up_proj [E, 2I, H]`, `down_proj [E, H, I]`). The classes keep their
//! own names and parameters and call these.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::{DType, IndexingUpdateOp};
use patcher_kernels::RoutedTokens;

use super::activation::Activation;
use super::dispatch::ExpertDispatch;
use super::experts::fused_expert_mlp_transposed;
use super::init::normal_param;
use super::specs::ExpertsSpec;
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

/// The fused experts' parameters `(gate_up_proj [E, 2I, H], down_proj [E, H, I])` of `spec`,
/// normal-initialised.
pub fn fused_expert_params<B: Backend>(
    spec: &ExpertsSpec,
    device: &B::Device,
) -> (Param<Tensor<B, 3>>, Param<Tensor<B, 3>>) {
    let (e, h, i) = (spec.num_experts, spec.hidden_size, spec.intermediate_size);
    let std = spec.initializer_range;
    (
        normal_param([e, 2 * i, h], std, device),
        normal_param([e, h, i], std, device),
    )
}

pub use patcher_kernels::TokenLayout;

/// transformers' eager experts loop: for each expert that was hit (ascending), its tokens go
/// through `expert(index, tokens)` (laid out as `layout` says), are scaled by their routing
/// weight and added to the output `[tokens, hidden]`, expert after expert.
///
/// On the CPU backends the tokens are gathered and the outputs scatter-added on the host
/// ([`patcher_kernels::gather_tokens`] and [`patcher_kernels::scatter_weighted`]: Flex's
/// `select_assign` copies its whole output per call). Elsewhere one `select` gathers every
/// expert's tokens and one `select_assign` adds the weighted outputs, whose rows accumulate in
/// list order: expert by expert, as transformers' `index_add_` per expert does, so
/// the sums round alike.
pub fn routed_experts_forward<B: Backend>(
    hidden_states: Tensor<B, 2>,
    top_k_index: Tensor<B, 2, Int>,
    top_k_weights: Tensor<B, 2>,
    num_experts: usize,
    layout: TokenLayout,
    expert: impl Fn(usize, Tensor<B, 2>) -> Tensor<B, 2>,
) -> Tensor<B, 2> {
    let device = hidden_states.device();
    let [_, hidden] = hidden_states.dims();
    let dispatch = ExpertDispatch::from_tensor(&top_k_index, num_experts);
    if dispatch.assignments.is_empty() {
        return hidden_states.zeros_like();
    }
    let routed: Vec<RoutedTokens<'_>> = dispatch
        .assignments
        .iter()
        .map(|a| RoutedTokens { tokens: &a.token_idx, top_k_pos: &a.top_k_pos })
        .collect();
    if let Some(inputs) = patcher_kernels::gather_tokens(&hidden_states, &routed, layout) {
        let outputs: Vec<Tensor<B, 2>> = inputs
            .into_iter()
            .zip(&dispatch.assignments)
            .map(|(x, a)| expert(a.expert, x))
            .collect();
        let outputs = match patcher_kernels::scatter_weighted(
            outputs,
            &routed,
            layout,
            &top_k_weights,
            hidden,
        ) {
            Ok(out) => return out,
            Err(outputs) => outputs,
        };
        let tokens = dispatch.token_tensor::<B>(&device);
        return scatter_on_device(
            hidden_states,
            tokens,
            outputs,
            &dispatch,
            layout,
            &top_k_weights,
        );
    }
    let tokens = dispatch.token_tensor::<B>(&device);
    let states = hidden_states.clone().select(0, tokens.clone());
    let mut start = 0;
    let outputs: Vec<Tensor<B, 2>> = dispatch
        .assignments
        .iter()
        .map(|a| {
            let n = a.token_idx.len();
            let x = states.clone().narrow(0, start, n);
            start += n;
            match layout {
                TokenLayout::Rows => expert(a.expert, x),
                TokenLayout::Columns => expert(a.expert, x.transpose()),
            }
        })
        .collect();
    scatter_on_device(
        hidden_states,
        tokens,
        outputs,
        &dispatch,
        layout,
        &top_k_weights,
    )
}

/// The device side of [`routed_experts_forward`]'s scatter: the outputs concatenated, scaled by
/// their weights in one product and added in one `select_assign` into zeros like `like`, at the
/// rows `tokens` (`dispatch`'s [`ExpertDispatch::token_tensor`]).
fn scatter_on_device<B: Backend>(
    like: Tensor<B, 2>,
    tokens: Tensor<B, 1, Int>,
    outputs: Vec<Tensor<B, 2>>,
    dispatch: &ExpertDispatch,
    layout: TokenLayout,
    top_k_weights: &Tensor<B, 2>,
) -> Tensor<B, 2> {
    let weights = dispatch.weights(top_k_weights);
    let weighted = match layout {
        TokenLayout::Rows => Tensor::cat(outputs, 0) * weights.unsqueeze_dim::<2>(1),
        TokenLayout::Columns => (Tensor::cat(outputs, 1) * weights.unsqueeze::<2>()).transpose(),
    };
    like.zeros_like()
        .select_assign(0, tokens, weighted, IndexingUpdateOp::Add)
}

/// transformers' eager loop over fused experts (`gate_up_proj [E, 2I, H]`, `down_proj
/// [E, H, I]`): [`routed_experts_forward`] with each expert as the transposed problem
/// ([`fused_expert_mlp_transposed`]).
pub fn fused_experts_forward<B: Backend>(
    gate_up_proj: Tensor<B, 3>,
    down_proj: Tensor<B, 3>,
    act_fn: Activation,
    hidden_states: Tensor<B, 2>,
    top_k_index: Tensor<B, 2, Int>,
    top_k_weights: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let num_experts = gate_up_proj.dims()[0];
    routed_experts_forward(
        hidden_states,
        top_k_index,
        top_k_weights,
        num_experts,
        TokenLayout::Columns,
        |expert, x_t| fused_expert_mlp_transposed(x_t, &gate_up_proj, &down_proj, expert, act_fn),
    )
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::Distribution;

    use super::*;

    /// The host loop (NdArray) and the device loop (the same backend under `Autodiff`, which the
    /// host kernels leave to Burn's ops) gather, weigh and add alike, bit for bit, in both layouts.
    #[test]
    fn host_and_device_loops_agree_bit_for_bit() {
        let device = Default::default();
        let (tokens, hidden, experts, k) = (7, 5, 4, 2);
        let x = Tensor::<NdArray, 2>::random([tokens, hidden], Distribution::Default, &device);
        let weights = Tensor::<NdArray, 2>::random([tokens, k], Distribution::Default, &device);
        let index: Vec<i64> = (0..tokens * k)
            .map(|i| ((i * 3 + i / 5) % 3) as i64)
            .collect();
        let index =
            Tensor::<NdArray, 2, Int>::from_data(TensorData::new(index, [tokens, k]), &device);
        for layout in [TokenLayout::Rows, TokenLayout::Columns] {
            let host = routed_experts_forward(
                x.clone(),
                index.clone(),
                weights.clone(),
                experts,
                layout,
                |e, x| x.clone() * (e as f32 + 1.5) + x.powf_scalar(2.0),
            );
            let device = routed_experts_forward(
                Tensor::<Autodiff<NdArray>, 2>::from_inner(x.clone()),
                Tensor::from_inner(index.clone()),
                Tensor::from_inner(weights.clone()),
                experts,
                layout,
                |e, x| x.clone() * (e as f32 + 1.5) + x.powf_scalar(2.0),
            );
            host.to_data().assert_eq(&device.inner().to_data(), true);
        }
    }
}
