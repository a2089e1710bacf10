use burn::nn::Linear;
use burn::prelude::*;
use burn_patcher::{slot_interface, Patchable};

#[slot_interface]
pub trait MlpLayer<B: Backend> {
    fn new(hidden: usize, device: &B::Device) -> Self;
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

// A class of the interface without its own `new`.
#[derive(Module, Patchable, Debug)]
#[patchable(implements(MlpLayer))]
pub struct Mlp<B: Backend> {
    up: Linear<B>,
}

impl<B: Backend> MlpLayer<B> for Mlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.up.forward(x)
    }
}

fn main() {}
