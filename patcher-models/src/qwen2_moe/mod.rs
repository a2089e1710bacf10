//! Qwen2-MoE as transformers 5.23 writes it (`models/qwen2_moe/modeling_qwen2_moe.py`): same
//! class names, same parameter names, experts fused in memory.

mod attention;
mod config;
mod conversions;
mod decoder_layer;
mod experts;
mod interfaces;
mod layer_mlp;
mod model;
mod moe;
mod norm_mlp;
mod pretrained;

/// The router's output (shared by the families' routers).
pub use crate::common::RouterOutput;
pub use attention::Qwen2MoeAttention;
pub use config::{LayerType, Qwen2MoeConfig};
pub use conversions::default_weight_conversions;
pub use decoder_layer::Qwen2MoeDecoderLayer;
pub use experts::Qwen2MoeExperts;
pub use interfaces::{
    Qwen2MoeAttentionInterface, Qwen2MoeDecoderLayerInterface, Qwen2MoeExpertsInterface,
    Qwen2MoeMLPInterface, Qwen2MoeSparseMoeBlockInterface, Qwen2MoeTopKRouterInterface,
};
pub use layer_mlp::Qwen2MoeLayerMlp;
pub use model::{Qwen2MoeForCausalLM, Qwen2MoeModel};
pub use moe::{Qwen2MoeSparseMoeBlock, Qwen2MoeTopKRouter};
pub use norm_mlp::{Qwen2MoeMLP, Qwen2MoeRMSNorm};
