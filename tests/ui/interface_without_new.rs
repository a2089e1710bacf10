use burn::prelude::*;
use burn_patcher::slot_interface;

#[slot_interface]
pub trait MlpLayer<B: Backend> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

fn main() {}
