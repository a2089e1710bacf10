//! The public blocks every family is written with, the kit's and a user's: the slot interfaces
//! shared by all families and the shapes their classes are built from (`interfaces`, `specs`),
//! RoPE, eager attention through the KV cache (`attention`, `cache`, `layout`), RMSNorm,
//! activations, top-k routing with PyTorch's tie order, expert dispatch, the projections of
//! attention and MLP classes, the decoder stack, what a causal LM computes (`causal_lm`,
//! `generation`), the config core and `LoadFamily::load`; and what BERT-style encoders compute
//! (`encoder`).

mod activation;
mod attention;
mod cache;
mod causal_lm;
pub(crate) mod config;
mod decoder;
mod dispatch;
mod encoder;
mod experts;
mod generation;
mod init;
mod interfaces;
mod layout;
pub mod limits;
mod moe;
mod norm;
mod output;
mod pretrained;
mod projections;
mod rope;
mod specs;
pub(crate) mod tensor_parallel;
mod topk;

pub use activation::Activation;
pub use attention::{
    causal_mask, eager_attention, fused_qkv_attention, repeat_kv, split_qkv, AttentionInputs,
    AttentionSpec,
};
pub use cache::{KvCache, LayerCache};
pub use causal_lm::CausalLm;
pub use config::DecoderConfig;
pub use decoder::{
    causal_lm_output, decoder_stack_forward, lm_head, pre_norm_residuals, DecoderLayer,
    DECODER_KEYS_TO_IGNORE,
};
pub use dispatch::{ExpertAssignment, ExpertDispatch};
pub use encoder::{
    encoder_inputs, encoder_stack_forward, EncoderBlock, EncoderEmbeddings, EncoderInputError,
    EncoderInputs, EncoderIntermediate, EncoderMask, EncoderOutput, EncoderPooler,
    EncoderSelfAttention, ResidualNormForward,
};
pub use experts::{fused_expert_mlp, fused_expert_mlp_transposed};
pub use generation::{FinishReason, GenerateError, Generated, GenerationConfig};
pub use init::{embedding, linear, linear_config, normal_param, ones_param};
pub use interfaces::{
    AttentionInterface, DecoderAttention, DecoderNormInterface, ExpertsInterface, FeedForward,
    MlpInterface, MoeExperts, MoeRouter, RouterInterface,
};
pub use layout::{AttentionLayout, DecoderInputError};
pub use moe::{
    fused_expert_params, fused_experts_forward, routed_experts_forward, top_k_routing,
    RouterOutput, TokenLayout,
};
pub use norm::rms_norm;
pub use output::{CausalLmOutput, Outputs};
pub use pretrained::LoadFamily;
pub use projections::{
    attention_projections, gated_mlp, gated_mlp_projections, separate_qkv_attention,
};
pub use rope::{
    apply_rotary_pos_emb, rotate_half, PositionEmbeddings, RopeParameters, RopeScaling,
    RotaryEmbedding,
};
pub use specs::{ExpertsSpec, MlpSpec, RouterSpec};
pub use tensor_parallel::TensorParallelConfig;
pub use topk::torch_topk;
