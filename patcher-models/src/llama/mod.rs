//! Llama as transformers 5.23 writes it (`models/llama/modeling_llama.py`): same class names,
//! same parameter names.

mod config;
mod model;
mod pretrained;

pub use config::LlamaConfig;
pub use model::{
    LlamaAttention, LlamaDecoderLayer, LlamaDecoderLayerInterface, LlamaForCausalLm, LlamaMlp,
    LlamaModel, LlamaRmsNorm,
};
pub use pretrained::default_weight_conversions;

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
