//! Llama as transformers 5.23 writes it (`models/llama/modeling_llama.py`): same class names,
//! same parameter names.

mod attention;
mod config;
mod conversions;
mod decoder_layer;
mod interfaces;
mod model;
mod norm_mlp;
mod pretrained;

pub use attention::LlamaAttention;
pub use config::LlamaConfig;
pub use conversions::default_weight_conversions;
pub use decoder_layer::LlamaDecoderLayer;
pub use interfaces::{LlamaAttentionInterface, LlamaDecoderLayerInterface, LlamaMLPInterface};
pub use model::{LlamaForCausalLM, LlamaModel};
pub use norm_mlp::{LlamaMLP, LlamaRMSNorm};

/// The transformers names of Llama's linears (attention, MLP, head): every `Linear` of the
/// model, e.g. the targets of a LoRA over all of them
/// ([`lora_patcher`](crate::replacements::lora_patcher)).
pub const LINEAR_NAMES: [&str; 8] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
];
