use burn::prelude::*;
use burn_patcher::Patchable;

#[derive(Patchable)]
enum Attention<B: Backend> {
    Plain(Tensor<B, 2>),
}

fn main() {}
