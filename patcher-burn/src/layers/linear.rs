//! The slot interface of `Linear`: [`LinearLayer`].

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use patcher_derive::slot_interface;

use super::rank::any_rank;

/// What a linear layer computes, `[.., d_input] -> [.., d_output]`, for the ranks models use;
/// `dyn LinearLayer<B>` has a `forward` for any rank on top.
pub trait LinearForward<B: Backend> {
    /// `[rows, d_input] -> [rows, d_output]`.
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;

    /// `[batch, seq, d_input] -> [batch, seq, d_output]`; by default through
    /// [`forward_2d`](Self::forward_2d) on the flattened rows.
    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, d_input] = x.dims();
        let y = self.forward_2d(x.reshape([batch * seq, d_input]));
        let d_output = y.dims()[1];
        y.reshape([batch, seq, d_output])
    }
}

/// Classes that fill `Linear` slots ([`LinearSlot`](super::LinearSlot)): Burn's `Linear` and
/// its replacements, built from a `LinearConfig`.
#[slot_interface(crate = "crate")]
pub trait LinearLayer<B: Backend>: LinearForward<B> {
    /// `Class::new(config, device)`.
    fn new(config: &LinearConfig, device: &B::Device) -> Self;
}

impl<B: Backend> dyn LinearLayer<B> + '_ {
    /// `[.., d_input] -> [.., d_output]`, like `Linear::forward`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        any_rank(x, |x| self.forward_2d(x), |x| self.forward_3d(x))
    }
}

/// Burn's `Linear`, with one row at a time (a decode step at batch 1) through
/// [`patcher_kernels::matmul_row`] where it runs (Flex, f32, a large weight: the GEMV over every
/// core).
impl<B: Backend> LinearForward<B> for Linear<B> {
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match patcher_kernels::matmul_row(x, &self.weight.val()) {
            Ok(y) => match &self.bias {
                Some(bias) => y + bias.val().unsqueeze(),
                None => y,
            },
            Err(x) => self.forward(x),
        }
    }

    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match x.dims() {
            [1, 1, d_input] => self.forward_2d(x.reshape([1, d_input])).unsqueeze(),
            _ => self.forward(x),
        }
    }
}
