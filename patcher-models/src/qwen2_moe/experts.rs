//! `Qwen2MoeExperts`: all experts' weights fused in two 3-D parameters, in PyTorch layout, as
//! transformers 5 holds them in memory (the checkpoint's per-expert linears are merged by the
//! model's default conversions, see [`super::default_weight_conversions`]).

use super::config::Qwen2MoeConfig;
use super::interfaces::Qwen2MoeExpertsInterface;
use crate::common::fused_experts_class;

fused_experts_class!(
    Qwen2MoeExperts,
    Qwen2MoeConfig,
    Qwen2MoeExpertsInterface,
    num_experts,
    moe_intermediate_size
);
