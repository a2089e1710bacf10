use burn::nn::Linear;
use burn::prelude::*;
use burn_patcher::Patchable;

#[derive(Patchable)]
#[patchable(name = LlamaAttention)]
struct Attention<B: Backend> {
    q_proj: Linear<B>,
}

fn main() {}
