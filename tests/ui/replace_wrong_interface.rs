use burn::backend::NdArray;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_patcher::{slot_interface, Patchable, Patcher};

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
    pub fn new(hidden: usize, device: &B::Device) -> Self {
        Self { up: LinearConfig::new(hidden, hidden).init(device) }
    }
}

impl<B: Backend> MlpLayer<B> for Mlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.up.forward(x)
    }
}

fn main() {
    // A Burn `Linear` fills Linear slots, not MlpLayer ones.
    let _ = Patcher::<NdArray>::new().replace::<Mlp<NdArray>, Linear<NdArray>>();
}
