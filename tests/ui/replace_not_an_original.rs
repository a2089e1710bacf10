use burn::backend::NdArray;
use burn::nn::Linear;
use burn::prelude::*;
use burn_patcher::{Patchable, Patcher};

// A class of no interface: nothing builds slots for it.
#[derive(Module, Patchable, Debug)]
pub struct Plain<B: Backend> {
    up: Linear<B>,
}

fn main() {
    let _ = Patcher::<NdArray>::new().replace::<Plain<NdArray>, Linear<NdArray>>();
}
