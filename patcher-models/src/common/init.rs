//! Parameter initialisation as transformers' `_init_weights` does it (normal with
//! `initializer_range`, norms at one). Parameters are lazy: a model about to be loaded from a
//! checkpoint never allocates its random init.

use burn::module::{Initializer, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;

/// `nn.Linear(d_in, d_out, bias)` with Burn's `[d_in, d_out]` weight.
pub fn linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    std: f64,
    device: &B::Device,
) -> Linear<B> {
    linear_config(d_in, d_out, bias, std).init(device)
}

/// The config of `nn.Linear(d_in, d_out, bias)`, normal-initialised: `.init(device)` builds a
/// `Linear`, `.init_slot(ctx)` a substitutable one.
pub fn linear_config(d_in: usize, d_out: usize, bias: bool, std: f64) -> LinearConfig {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(normal(std))
}

/// `nn.Embedding(n, d)`.
pub fn embedding<B: Backend>(n: usize, d: usize, std: f64, device: &B::Device) -> Embedding<B> {
    EmbeddingConfig::new(n, d)
        .with_initializer(normal(std))
        .init(device)
}

/// A bare float parameter of `shape`, normal-initialised.
pub fn normal_param<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    normal(std).init(shape, device)
}

/// A bare float parameter of `shape`, all ones (norm weights).
pub fn ones_param<B: Backend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Initializer::Ones.init(shape, device)
}

fn normal(std: f64) -> Initializer {
    Initializer::Normal { mean: 0.0, std }
}
