//! Mixtral's classes: attention, fused experts, top-k router, sparse MoE block, RMSNorm, decoder
//! layer, model and causal LM, as transformers 5.23's `modeling_mixtral.py` names them.

use burn::prelude::*;
use patcher_burn::layers::LinearSlot;
use patcher_burn::{BuildContext, Slot};

use super::config::MixtralConfig;
use super::{
    MixtralAttentionInterface, MixtralDecoderLayerInterface, MixtralExpertsInterface,
    MixtralSparseMoeBlockInterface, MixtralTopKRouterInterface,
};
use patcher_derive::Patchable;

use crate::common::{
    causal_lm_class, decoder_layer_class, decoder_model_class, fused_experts_class, rms_norm_class,
    separate_qkv_attention_class, top_k_router_class, FeedForward,
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

top_k_router_class! { MixtralTopKRouter, MixtralConfig, MixtralTopKRouterInterface, num_local_experts, norm_topk_prob = true }

/// transformers' `MixtralSparseMoeBlock` (router jitter is a training option, left out).
#[derive(Module, Patchable, Debug)]
#[patchable(crate = "patcher_burn", implements(MixtralSparseMoeBlockInterface))]
pub struct MixtralSparseMoeBlock<B: Backend> {
    /// The router: `MixtralTopKRouter` or its replacement.
    pub gate: Slot<B, dyn MixtralTopKRouterInterface<B>>,
    /// The experts: `MixtralExperts` or its replacement.
    pub experts: Slot<B, dyn MixtralExpertsInterface<B>>,
}

impl<B: Backend> MixtralSparseMoeBlock<B> {
    /// `MixtralSparseMoeBlock(config)`, the experts built through `ctx`.
    pub fn new(config: &MixtralConfig, ctx: &BuildContext<'_, B>) -> Self {
        Self {
            gate: Slot::build::<MixtralTopKRouter<B>>(ctx, config),
            experts: Slot::build::<MixtralExperts<B>>(ctx, config),
        }
    }
}

impl<B: Backend> FeedForward<B> for MixtralSparseMoeBlock<B> {
    fn forward_2d(&self, flat: Tensor<B, 2>) -> Tensor<B, 2> {
        let routing = self.gate.forward(flat.clone());
        (self.experts).forward(flat, routing.top_k_index, routing.top_k_weights)
    }
}

rms_norm_class!(MixtralRMSNorm);

decoder_layer_class! { MixtralDecoderLayer, MixtralConfig, MixtralDecoderLayerInterface,
MixtralAttention, MixtralAttentionInterface, MixtralSparseMoeBlock, MixtralSparseMoeBlockInterface,
MixtralRMSNorm }

decoder_model_class! { MixtralModel, MixtralConfig, MixtralDecoderLayer,
MixtralDecoderLayerInterface, MixtralRMSNorm }

causal_lm_class!(
    MixtralForCausalLM,
    MixtralModel,
    MixtralConfig,
    LinearSlot,
    init_slot
);
