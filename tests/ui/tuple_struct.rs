use burn::nn::Linear;
use burn::prelude::*;
use burn_patcher::Patchable;

#[derive(Patchable)]
struct Attention<B: Backend>(Linear<B>);

fn main() {}
