//! Mixtral's classes: attention, fused experts, top-k router, sparse MoE block, RMSNorm, decoder
//! layer, model and causal LM, as transformers 5.23's `modeling_mixtral.py` names them.

use burn::prelude::*;
use patcher_burn::layers::LinearSlot;
use patcher_burn::{BuildContext, Slot};

use super::config::MixtralConfig;
use super::{MixtralAttentionInterface, MixtralExpertsInterface};
use crate::common::{
    causal_lm_class, decoder_layer_class, decoder_model_class, fused_experts_class, rms_norm_class,
    separate_qkv_attention_class, top_k_router_class,
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

top_k_router_class! { MixtralTopKRouter, MixtralConfig, num_local_experts, norm_topk_prob = true }

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
