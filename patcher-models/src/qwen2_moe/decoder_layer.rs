//! `Qwen2MoeDecoderLayer`: pre-norm attention and pre-norm MLP (sparse MoE or dense), each with a
//! residual.

use super::attention::Qwen2MoeAttention;
use super::config::Qwen2MoeConfig;
use super::interfaces::{Qwen2MoeAttentionInterface, Qwen2MoeDecoderLayerInterface};
use super::layer_mlp::Qwen2MoeLayerMlp;
use super::norm_mlp::Qwen2MoeRMSNorm;
use crate::common::decoder_layer_class;

decoder_layer_class!(
    Qwen2MoeDecoderLayer,
    Qwen2MoeConfig,
    Qwen2MoeDecoderLayerInterface,
    Qwen2MoeAttention,
    Qwen2MoeAttentionInterface,
    per_layer_mlp = Qwen2MoeLayerMlp,
    Qwen2MoeRMSNorm
);
