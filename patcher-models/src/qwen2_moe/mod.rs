//! Qwen2-MoE as transformers 5.23 writes it (`models/qwen2_moe/modeling_qwen2_moe.py`): same
//! class names, same parameter names, experts fused in memory.

mod config;
mod model;
mod moe;
mod pretrained;

/// The router's output (shared by the families' routers).
pub use crate::common::RouterOutput;
pub use config::{LayerType, Qwen2MoeConfig};
pub use model::{
    Qwen2MoeAttention, Qwen2MoeDecoderLayer, Qwen2MoeDecoderLayerInterface, Qwen2MoeForCausalLm,
    Qwen2MoeMlp, Qwen2MoeModel, Qwen2MoeRmsNorm,
};
pub use moe::{
    Qwen2MoeExperts, Qwen2MoeLayerMlp, Qwen2MoeSparseMoeBlock, Qwen2MoeSparseMoeBlockInterface,
    Qwen2MoeTopKRouter,
};
pub use pretrained::default_weight_conversions;
