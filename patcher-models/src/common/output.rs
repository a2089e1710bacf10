//! What a causal LM's forward returns.

use burn::prelude::*;

/// Logits and, on request, hidden states (transformers' `CausalLMOutputWithPast` without the
/// cache and loss).
#[derive(Debug, Clone)]
pub struct CausalLmOutput<B: Backend> {
    /// `[batch, seq, vocab]`.
    pub logits: Tensor<B, 3>,
    /// With `output_hidden_states`, `num_hidden_layers + 1` tensors `[batch, seq, hidden]` in
    /// transformers' convention: `[0]` the embedding output, `[i]` (`1 <= i < n`) the output of
    /// decoder layer `i - 1`, and `[n]` the **final-normed** output of the last layer (transformers
    /// overwrites the last entry with `last_hidden_state`).
    pub hidden_states: Option<Vec<Tensor<B, 3>>>,
}
