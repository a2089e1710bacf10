use burn::prelude::*;
use burn_patcher::slot_interface;

#[slot_interface]
pub trait MlpLayer<B: Backend> {
    // The constructor is declared, never defined, in the interface.
    fn new(hidden: usize, device: &B::Device) -> Self
    where
        Self: Sized + Default,
    {
        let _ = (hidden, device);
        Self::default()
    }
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

fn main() {}
