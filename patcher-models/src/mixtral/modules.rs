//! Mixtral's classes: attention, fused experts, top-k router, sparse MoE block, RMSNorm, decoder
//! layer, model and causal LM, as transformers 5.23's `modeling_mixtral.py` names them.

use burn::module::Param;
use burn::prelude::*;
use patcher_burn::layers::LinearSlot;
use patcher_burn::{BuildContext, Slot};

use super::config::MixtralConfig;
use super::{MixtralAttentionInterface, MixtralExpertsInterface};
use crate::common::{
    causal_lm_class, decoder_layer_class, decoder_model_class, fused_experts_class, normal_param,
    rms_norm_class, separate_qkv_attention_class, top_k_routing, RouterOutput,
};

separate_qkv_attention_class!(
    MixtralAttention,
    MixtralConfig,
    MixtralAttentionInterface,
    LinearSlot,
    init_slot
);

fused_experts_class!(
    MixtralExperts,
    MixtralConfig,
    MixtralExpertsInterface,
    num_local_experts,
    intermediate_size
);

/// transformers' `MixtralTopKRouter`: a bare `weight [num_local_experts, hidden]` (PyTorch
/// layout, the checkpoint's `block_sparse_moe.gate.weight`); the top-k probabilities are always
/// renormalised.
#[derive(Module, Debug)]
pub struct MixtralTopKRouter<B: Backend> {
    /// `[num_local_experts, hidden]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `k`.
    pub top_k: usize,
}

impl<B: Backend> MixtralTopKRouter<B> {
    /// `MixtralTopKRouter(config)`.
    pub fn new(config: &MixtralConfig, device: &B::Device) -> Self {
        let shape = [config.num_local_experts, config.hidden_size];
        Self {
            weight: normal_param(shape, config.initializer_range, device),
            top_k: config.num_experts_per_tok,
        }
    }

    /// `[tokens, hidden]` to the router logits and each token's top-k experts and weights.
    pub fn forward(&self, hidden_states: Tensor<B, 2>) -> RouterOutput<B> {
        top_k_routing(hidden_states, self.weight.val(), self.top_k, true)
    }
}

/// transformers' `MixtralSparseMoeBlock` (router jitter is a training option, left out).
#[derive(Module, Debug)]
pub struct MixtralSparseMoeBlock<B: Backend> {
    /// The router.
    pub gate: MixtralTopKRouter<B>,
    /// The experts: `MixtralExperts` or its replacement.
    pub experts: Slot<B, dyn MixtralExpertsInterface<B>>,
}

impl<B: Backend> MixtralSparseMoeBlock<B> {
    /// `MixtralSparseMoeBlock(config)`, the experts built through `ctx`.
    pub fn new(config: &MixtralConfig, ctx: &BuildContext<'_, B>) -> Self {
        Self {
            gate: MixtralTopKRouter::new(config, ctx.device()),
            experts: Slot::build::<MixtralExperts<B>>(ctx, config),
        }
    }

    /// `[batch, seq, hidden] -> [batch, seq, hidden]`.
    pub fn forward(&self, hidden_states: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = hidden_states.dims();
        let flat = hidden_states.reshape([batch * seq, hidden]);
        let routing = self.gate.forward(flat.clone());
        let out = (self.experts).forward(flat, routing.top_k_index, routing.top_k_weights);
        out.reshape([batch, seq, hidden])
    }
}

rms_norm_class!(MixtralRMSNorm);

decoder_layer_class!(
    MixtralDecoderLayer,
    MixtralConfig,
    MixtralAttention,
    MixtralAttentionInterface,
    MixtralSparseMoeBlock,
    MixtralRMSNorm
);

decoder_model_class!(
    MixtralModel,
    MixtralConfig,
    MixtralDecoderLayer,
    MixtralRMSNorm
);

causal_lm_class!(
    MixtralForCausalLM,
    MixtralModel,
    MixtralConfig,
    LinearSlot,
    init_slot
);
