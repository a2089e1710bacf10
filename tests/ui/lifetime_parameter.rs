use burn::prelude::*;
use burn_patcher::Patchable;

#[derive(Patchable)]
struct Attention<'a, B: Backend> {
    name: &'a str,
    weight: Tensor<B, 2>,
}

fn main() {}
