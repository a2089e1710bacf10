//! The shapes the shared slot interfaces build their classes from (besides
//! [`AttentionSpec`](super::AttentionSpec)): a family's config computes them, every class of the
//! interface (the family's own, a replacement, a user's) reads only them, so one replacement
//! fills every family.

use super::activation::Activation;

/// A gated MLP `down(act(gate(x)) * up(x))` (`LlamaMLP`, `Qwen2MoeMLP`, a shared expert), what
/// an [`MlpInterface`](super::MlpInterface) class is built from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlpSpec {
    /// Model width (input of gate and up, output of down).
    pub hidden_size: usize,
    /// Width of the gated hidden layer.
    pub intermediate_size: usize,
    /// Whether the three linears have biases.
    pub bias: bool,
    /// The activation of the gate.
    pub hidden_act: Activation,
    /// Standard deviation of the normal init of the weights.
    pub initializer_range: f64,
}

/// The routed experts of a mixture-of-experts block, each a gated MLP without biases, what an
/// [`ExpertsInterface`](super::ExpertsInterface) class is built from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpertsSpec {
    /// Routed experts.
    pub num_experts: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of each expert.
    pub intermediate_size: usize,
    /// The experts' activation.
    pub hidden_act: Activation,
    /// Standard deviation of the normal init of the weights.
    pub initializer_range: f64,
}

/// A top-k router over `num_experts` experts, what a
/// [`RouterInterface`](super::RouterInterface) class is built from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouterSpec {
    /// Experts to choose from.
    pub num_experts: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Experts per token (`k`).
    pub top_k: usize,
    /// Whether the top-k probabilities are renormalised to sum to 1.
    pub norm_topk_prob: bool,
    /// Standard deviation of the normal init of the weight.
    pub initializer_range: f64,
}
