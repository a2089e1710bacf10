//! Pieces shared by the model families and the replacements: RoPE, attention math, RMSNorm,
//! activations, top-k routing with PyTorch's tie order, expert dispatch, the interfaces of
//! substitutable classes, and the forward output.

mod activation;
mod attention;
mod dispatch;
mod init;
mod interfaces;
mod norm;
mod output;
mod rope;
mod topk;

pub use activation::Activation;
pub use attention::{causal_mask, eager_attention, repeat_kv, AttentionSpec};
pub use dispatch::{ExpertAssignment, ExpertDispatch};
pub use init::{embedding, linear, normal_param, ones_param};
pub use interfaces::{DecoderAttention, MoeExperts};
pub use norm::rms_norm;
pub use output::CausalLMOutput;
pub use rope::{
    apply_rotary_pos_emb, rotate_half, PositionEmbeddings, RopeParameters, RopeScaling,
    RotaryEmbedding,
};
pub use topk::torch_topk;
