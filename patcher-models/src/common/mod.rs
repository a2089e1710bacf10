//! Pieces shared by the model families and the replacements: RoPE, attention math, RMSNorm,
//! activations, top-k routing with PyTorch's tie order, expert dispatch, the interfaces of
//! substitutable classes, and the forward output; and the code the families' classes share
//! while keeping their own names and fields: the projections of attention and MLP classes, the
//! decoder forward, the config core and `from_pretrained`; and the same for BERT-style
//! encoders (`encoder`, `encoder_family`).

mod activation;
mod attention;
pub(crate) mod config;
pub(crate) mod cpu;
#[cfg(feature = "flex")]
mod cpu_attention;
mod cpu_heads;
mod decoder;
mod dispatch;
mod encoder;
pub(crate) mod encoder_family;
mod experts;
pub(crate) mod family;
mod init;
mod interfaces;
pub mod limits;
mod moe;
mod norm;
mod output;
pub(crate) mod pretrained;
mod projections;
mod rope;
mod topk;

pub use activation::Activation;
pub use attention::{
    causal_mask, eager_attention, eager_attention_without_rope, fused_qkv_attention, repeat_kv,
    split_qkv, AttentionSpec,
};
pub use config::DecoderConfig;
pub use decoder::{
    causal_lm_output, decoder_stack_forward, lm_head, pre_norm_residuals, DecoderLayer,
};
pub use dispatch::{ExpertAssignment, ExpertDispatch};
pub use encoder::{
    embedding_slot, encoder_inputs, encoder_stack_forward, encoder_weight_conversions,
    layer_norm_slot, linear_slot, square_linear_slot, EncoderBlock, EncoderConfig,
    EncoderEmbeddings, EncoderInputError, EncoderInputs, EncoderIntermediate, EncoderMask,
    EncoderOutput, EncoderPooler, EncoderSelfAttention, ResidualNormForward,
};
pub(crate) use encoder_family::{
    encoder_attention_class, encoder_class, encoder_embeddings_class, encoder_interfaces,
    encoder_intermediate_class, encoder_layer_class, encoder_model_class, encoder_pooler_class,
    encoder_self_attention_class, residual_norm_class,
};
pub use experts::{fused_expert_mlp, fused_expert_mlp_transposed};
pub use family::AsLinearLayer;
pub(crate) use family::{
    causal_lm_class, decoder_layer_class, decoder_model_class, fused_experts_class, init_linear,
    moe_layer_interfaces, rms_norm_class, root_model_constructors, separate_qkv_attention_class,
    top_k_router_class,
};
pub use init::{embedding, linear, linear_config, normal_param, ones_param};
pub(crate) use interfaces::any_rank_forward;
pub use interfaces::{DecoderAttention, DecoderNormInterface, FeedForward, MoeExperts, MoeRouter};
pub use moe::{
    fused_expert_params, fused_experts_forward, routed_experts_forward, top_k_routing,
    RouterOutput, TokenLayout,
};
pub use norm::rms_norm;
pub use output::CausalLMOutput;
pub use projections::{
    attention_projections, gated_mlp, gated_mlp_projections, separate_qkv_attention,
};
pub use rope::{
    apply_rotary_pos_emb, rotate_half, PositionEmbeddings, RopeParameters, RopeScaling,
    RotaryEmbedding,
};
pub use topk::torch_topk;
