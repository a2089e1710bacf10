//! What the forward benchmark feeds its models: deterministic token ids (the same as
//! `scripts/bench_transformers_forward.py`), and the "native" copy of a loaded model.

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;

/// Copies every float parameter into a fresh contiguous tensor (the "native" model).
pub struct Contiguous;

impl<B: Backend> ModuleMapper<B> for Contiguous {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let device = tensor.device();
        Param::from_mapped_value(id, Tensor::from_data(tensor.into_data(), &device), mapper)
    }
}

pub fn input_ids<B: Backend>(
    batch: usize,
    tokens: usize,
    vocab: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let mut rng = super::checkpoint::SplitMix(0x1d5);
    let ids: Vec<i64> = (0..batch * tokens)
        .map(|_| (rng.next() % vocab as u64) as i64)
        .collect();
    Tensor::from_data(TensorData::new(ids, [batch, tokens]), device)
}
