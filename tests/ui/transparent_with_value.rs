use burn::nn::Linear;
use burn::prelude::*;
use burn_patcher::Patchable;

#[derive(Patchable, Debug, Clone)]
#[patchable(transparent = "yes")]
pub struct Experts<B: Backend> {
    experts: Vec<Linear<B>>,
}

fn main() {}
