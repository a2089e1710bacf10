//! `LlamaModel` (embeddings, layers, final norm) and `LlamaForCausalLM` (plus `lm_head`).

use patcher_burn::layers::LinearSlot;

use super::config::LlamaConfig;
use super::decoder_layer::LlamaDecoderLayer;
use super::interfaces::LlamaDecoderLayerInterface;
use super::norm_mlp::LlamaRMSNorm;
use crate::common::{causal_lm_class, decoder_model_class};

decoder_model_class!(
    LlamaModel,
    LlamaConfig,
    LlamaDecoderLayer,
    LlamaDecoderLayerInterface,
    LlamaRMSNorm
);

causal_lm_class!(
    LlamaForCausalLM,
    LlamaModel,
    LlamaConfig,
    LinearSlot,
    init_slot
);
