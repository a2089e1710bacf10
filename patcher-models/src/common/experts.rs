//! One expert's gated MLP on the tokens routed to it, for expert weights held in transformers'
//! fused layout (`gate_up_proj [2I, H]`, `down_proj [H, I]` per expert: PyTorch's `[out, in]`).
//!
//! `x @ w.T` on such a weight multiplies by a transposed view: Burn's CPU backends then pack
//! (Flex) or copy (NdArray) the whole weight for every expert call, which made the fused experts
//! 4 to 8 times slower than the same matmuls on contiguous `[in, out]` weights. The transposed
//! problem `w @ x.T` reads the weight in its own layout and only transposes the expert's few
//! token rows; its result is the expert's output transposed (`[H, n]`), and the activation and
//! gating in between run on contiguous rows. Each output value is the same dot product.

use burn::prelude::*;

use super::activation::Activation;

/// `down(act(gate(x)) * up(x))` for the tokens `x [n, H]` routed to `expert`, with the fused
/// `gate_up_proj [E, 2I, H]` (each expert's gate rows, then its up rows) and `down_proj
/// [E, H, I]` in PyTorch's layout, as `[n, H]` (a transposed view of
/// [`fused_expert_mlp_transposed`]'s result).
pub fn fused_expert_mlp<B: Backend>(
    x: Tensor<B, 2>,
    gate_up_proj: &Tensor<B, 3>,
    down_proj: &Tensor<B, 3>,
    expert: usize,
    act_fn: Activation,
) -> Tensor<B, 2> {
    fused_expert_mlp_transposed(x.transpose(), gate_up_proj, down_proj, expert, act_fn).transpose()
}

/// [`fused_expert_mlp`] as the transposed problem: the tokens as columns, `x_t [H, n]`, to the
/// output's columns, `[H, n]`, contiguous. `x_t` contiguous is the fastest operand on the CPU
/// backends (Flex's GEMM ran 1.3x faster than on a transposed view).
///
/// The expert's weights are taken as `[1, rows, cols]` slices, multiplied as they lie: reshaping
/// a slice that does not start at the tensor's first element makes Flex copy it.
pub fn fused_expert_mlp_transposed<B: Backend>(
    x_t: Tensor<B, 2>,
    gate_up_proj: &Tensor<B, 3>,
    down_proj: &Tensor<B, 3>,
    expert: usize,
    act_fn: Activation,
) -> Tensor<B, 2> {
    let [hidden, n] = x_t.dims();
    let inter = gate_up_proj.dims()[1] / 2;
    let gate_up = gate_up_proj.clone().narrow(0, expert, 1);
    let down = down_proj.clone().narrow(0, expert, 1);
    // `[2I, n]`: the gate's rows, then the up projection's (2-D, so both halves are contiguous).
    let gate_up_t = gate_up.matmul(x_t.unsqueeze::<3>()).reshape([2 * inter, n]);
    let hidden_t = act_fn.gated_halves(gate_up_t);
    down.matmul(hidden_t.unsqueeze::<3>()).reshape([hidden, n])
}
