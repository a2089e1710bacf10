use burn::module::Module;
use burn::prelude::*;
use burn_patcher::Patchable;

#[derive(Patchable)]
struct Block<B: Backend, M: Module<B>> {
    inner: M,
    weight: Tensor<B, 2>,
}

fn main() {}
