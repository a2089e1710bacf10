//! `Qwen2MoeModel` (embeddings, layers, final norm) and `Qwen2MoeForCausalLM` (plus `lm_head`).

use burn::nn::Linear;

use super::config::Qwen2MoeConfig;
use super::decoder_layer::Qwen2MoeDecoderLayer;
use super::interfaces::Qwen2MoeDecoderLayerInterface;
use super::norm_mlp::Qwen2MoeRMSNorm;
use crate::common::{causal_lm_class, decoder_model_class};

decoder_model_class!(
    Qwen2MoeModel,
    Qwen2MoeConfig,
    Qwen2MoeDecoderLayer,
    Qwen2MoeDecoderLayerInterface,
    Qwen2MoeRMSNorm
);

causal_lm_class!(
    Qwen2MoeForCausalLM,
    Qwen2MoeModel,
    Qwen2MoeConfig,
    Linear,
    init
);
