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

/// What a causal LM's forward computes beside the hidden state it must: the hidden states of
/// every layer (transformers' `output_hidden_states`), and the positions that get logits
/// (transformers' `logits_to_keep`: `generate` asks for the last position's only, which spares
/// the head a `[seq, vocab]` product at each prompt).
///
/// ```
/// use patcher_models::common::Outputs;
///
/// let outputs = Outputs::logits().with_hidden_states().keep_last_logits(1);
/// assert!(outputs.hidden_states);
/// assert_eq!(outputs.logits_to_keep, Some(1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outputs {
    /// Every layer's hidden states too.
    pub hidden_states: bool,
    /// Logits of the last `n` positions only (`None`: of every position).
    pub logits_to_keep: Option<usize>,
}

impl Outputs {
    /// The logits of every position, no hidden states.
    pub fn logits() -> Self {
        Self::default()
    }

    /// The hidden states of every layer too.
    pub fn with_hidden_states(self) -> Self {
        Self { hidden_states: true, ..self }
    }

    /// Logits of the last `n` positions only.
    pub fn keep_last_logits(self, n: usize) -> Self {
        Self { logits_to_keep: Some(n), ..self }
    }
}
