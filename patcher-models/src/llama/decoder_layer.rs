//! `LlamaDecoderLayer`: pre-norm attention and pre-norm MLP, each with a residual.

use super::attention::LlamaAttention;
use super::config::LlamaConfig;
use super::interfaces::{LlamaAttentionInterface, LlamaDecoderLayerInterface, LlamaMLPInterface};
use super::norm_mlp::{LlamaMLP, LlamaRMSNorm};
use crate::common::decoder_layer_class;

decoder_layer_class!(
    LlamaDecoderLayer,
    LlamaConfig,
    LlamaDecoderLayerInterface,
    LlamaAttention,
    LlamaAttentionInterface,
    LlamaMLP,
    LlamaMLPInterface,
    LlamaRMSNorm
);
