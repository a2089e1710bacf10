//! Parity of a forward with transformers' reference outputs: logits and every hidden state.

use burn::prelude::*;
use patcher_models::common::CausalLmOutput;

use super::{max_abs_diff, Reference};

/// Summary of one parity run.
pub struct Parity {
    pub logits: f32,
    pub hidden_states: Vec<f32>,
}

impl Parity {
    pub fn max(&self) -> f32 {
        self.hidden_states
            .iter()
            .copied()
            .fold(self.logits, f32::max)
    }
}

/// The max abs differences of `logits` and of each hidden state from `reference`.
pub fn parity<B: Backend>(
    logits: &Tensor<B, 3>,
    hidden_states: &[Tensor<B, 3>],
    reference: &Reference,
) -> Parity {
    assert_eq!(
        hidden_states.len(),
        reference.hidden_states.len(),
        "number of hidden states"
    );
    Parity {
        logits: max_abs_diff(logits, &reference.logits),
        hidden_states: hidden_states
            .iter()
            .zip(&reference.hidden_states)
            .map(|(a, e)| max_abs_diff(a, e))
            .collect(),
    }
}

/// Prints the parity of `out` with `reference` under `label` and asserts its maximum is within
/// `tolerance`.
pub fn assert_parity<B: Backend>(
    label: &str,
    out: &CausalLmOutput<B>,
    reference: &Reference,
    tolerance: f32,
) {
    let p = parity(
        &out.logits,
        out.hidden_states.as_deref().unwrap(),
        reference,
    );
    println!(
        "{label}: logits {:.3e}, hidden states {:?}",
        p.logits, p.hidden_states
    );
    assert!(
        p.max() <= tolerance,
        "{label}: max abs diff {} > {tolerance}",
        p.max()
    );
}
