use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_patcher::{slot_interface, Patchable};

#[slot_interface]
pub trait MlpLayer<B: Backend> {
    fn new(hidden: usize, device: &B::Device) -> Self;
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

#[derive(Module, Patchable, Debug)]
#[patchable(implements(MlpLayer))]
pub struct Mlp<B: Backend> {
    up: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    // The class's own `new` must take the interface's arguments: `(usize, &Device)`.
    pub fn new(hidden: u32, device: &B::Device) -> Self {
        let hidden = hidden as usize;
        Self { up: LinearConfig::new(hidden, hidden).init(device) }
    }
}

impl<B: Backend> MlpLayer<B> for Mlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.up.forward(x)
    }
}

fn main() {}
