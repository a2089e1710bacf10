use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_patcher::{slot_interface, Patchable};

#[slot_interface]
pub trait MlpLayer<B: Backend> {
    fn new(hidden: usize, device: &B::Device) -> Self;
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

// Claims the interface without implementing it.
#[derive(Module, Patchable, Debug)]
#[patchable(implements(MlpLayer))]
pub struct Mlp<B: Backend> {
    up: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    pub fn new(hidden: usize, device: &B::Device) -> Self {
        Self { up: LinearConfig::new(hidden, hidden).init(device) }
    }
}

fn main() {}
