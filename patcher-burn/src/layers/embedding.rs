//! The slot interface of `Embedding`: [`EmbeddingLayer`].

use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;
use patcher_derive::slot_interface;

/// What an embedding computes: `[batch, seq]` token ids to `[batch, seq, d_model]`.
pub trait EmbeddingForward<B: Backend> {
    /// `[batch, seq] -> [batch, seq, d_model]`, like `Embedding::forward`.
    fn forward(&self, input: Tensor<B, 2, Int>) -> Tensor<B, 3>;

    /// `hidden [batch, seq, d_model]` to a score per row of the table, `[batch, seq,
    /// n_embedding]`: `hidden @ weight^T`, the output layer tied to this embedding (transformers'
    /// tied `lm_head`, Flax's `Embed.attend`). A replacement class computes it from whatever it
    /// holds, so a tied head works whatever fills the slot.
    fn attend(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3>;
}

/// Classes that fill `Embedding` slots ([`EmbeddingSlot`](super::EmbeddingSlot)).
#[slot_interface(crate = "crate")]
pub trait EmbeddingLayer<B: Backend>: EmbeddingForward<B> {
    /// `Class::new(config, device)`.
    fn new(config: &EmbeddingConfig, device: &B::Device) -> Self;
}

impl<B: Backend> EmbeddingForward<B> for Embedding<B> {
    fn forward(&self, input: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        Embedding::forward(self, input)
    }

    /// One row at a time (a decode step at batch 1) through [`patcher_kernels::matmul_row`]
    /// where it runs (Flex, f32: the tied head's GEMV over every core).
    fn attend(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let weight_t = self.weight.val().transpose();
        if let [1, 1, d_model] = hidden.dims() {
            match patcher_kernels::matmul_row(hidden.reshape([1, d_model]), &weight_t) {
                Ok(scores) => return scores.unsqueeze(),
                Err(row) => return row.matmul(weight_t).unsqueeze(),
            }
        }
        hidden.matmul(weight_t.unsqueeze())
    }
}
