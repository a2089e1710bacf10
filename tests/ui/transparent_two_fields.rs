use burn::nn::Linear;
use burn::prelude::*;
use burn_patcher::Patchable;

// A transparent class is its one module field.
#[derive(Patchable, Debug, Clone)]
#[patchable(transparent)]
pub struct Experts<B: Backend> {
    experts: Vec<Linear<B>>,
    shared: Linear<B>,
}

fn main() {}
