//! The linear projections that several classes hold as their own fields (separate q/k/v/o
//! attention, gated MLPs): built and run here, once. The classes keep the linears as fields so
//! that their parameter paths stay transformers' (`self_attn.q_proj.weight`, `mlp.up_proj.weight`).
//!
//! They take the projections as `&dyn LinearLayer<B>`, so a class may hold Burn `Linear`s or
//! substitutable [`LinearSlot`](patcher_burn::layers::LinearSlot)s.

use burn::nn::LinearConfig;
use burn::prelude::*;
use patcher_burn::layers::LinearLayer;

use super::activation::Activation;
use super::attention::{eager_attention, AttentionInputs, AttentionSpec};
use super::init::linear_config;
use super::specs::MlpSpec;

/// The configs of `[q_proj, k_proj, v_proj, o_proj]` of an attention class with separate q/k/v
/// projections, shaped and biased by `spec` (`.init(device)` each, or `.init_slot(ctx)`).
pub fn attention_projections(spec: &AttentionSpec) -> [LinearConfig; 4] {
    let (h, std) = (spec.hidden_size, spec.initializer_range);
    [
        linear_config(h, spec.q_size(), spec.qkv_bias, std),
        linear_config(h, spec.kv_size(), spec.qkv_bias, std),
        linear_config(h, spec.kv_size(), spec.qkv_bias, std),
        linear_config(spec.q_size(), h, spec.o_bias, std),
    ]
}

/// The forward of an attention class with separate projections `[q_proj, k_proj, v_proj,
/// o_proj]`: project, [`eager_attention`] (through the cache when given), project out
/// (`hidden_states [batch, seq, hidden]` to `[batch, seq, hidden]`).
pub fn separate_qkv_attention<B: Backend>(
    [q_proj, k_proj, v_proj, o_proj]: [&dyn LinearLayer<B>; 4],
    spec: &AttentionSpec,
    hidden_states: Tensor<B, 3>,
    inputs: AttentionInputs<'_, B>,
) -> Tensor<B, 3> {
    let qkv = [q_proj, k_proj, v_proj].map(|p| p.forward(hidden_states.clone()));
    o_proj.forward(eager_attention(spec, qkv, inputs))
}

/// The configs of `[gate_proj, up_proj, down_proj]` of the gated MLP `spec` (`.init(device)`
/// each, or `.init_slot(ctx)`).
pub fn gated_mlp_projections(spec: &MlpSpec) -> [LinearConfig; 3] {
    let (h, i) = (spec.hidden_size, spec.intermediate_size);
    let (bias, std) = (spec.bias, spec.initializer_range);
    [
        linear_config(h, i, bias, std),
        linear_config(h, i, bias, std),
        linear_config(i, h, bias, std),
    ]
}

/// `down(act(gate(x)) * up(x))` over the last dimension (transformers' `XxxMLP.forward`).
pub fn gated_mlp<B: Backend, const D: usize>(
    [gate_proj, up_proj, down_proj]: [&dyn LinearLayer<B>; 3],
    act_fn: Activation,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let gate = gate_proj.forward(x.clone());
    down_proj.forward(act_fn.gated(gate, up_proj.forward(x)))
}
