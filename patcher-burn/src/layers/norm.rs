//! The slot interfaces of `LayerNorm` and `RmsNorm`: [`LayerNormLayer`], [`RmsNormLayer`].

use burn::nn::{LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use patcher_derive::slot_interface;

use super::rank::any_rank;

/// What a normalization over the last dimension computes, for the ranks models use; the norm
/// slots' trait objects have a `forward` for any rank on top.
pub trait NormForward<B: Backend> {
    /// `[rows, d_model] -> [rows, d_model]`.
    fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;

    /// `[batch, seq, d_model] -> [batch, seq, d_model]`; by default through
    /// [`forward_2d`](Self::forward_2d) on the flattened rows.
    fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dims = x.dims();
        self.forward_2d(x.reshape([dims[0] * dims[1], dims[2]]))
            .reshape(dims)
    }
}

/// Classes that fill `LayerNorm` slots ([`LayerNormSlot`](super::LayerNormSlot)).
#[slot_interface(crate = "crate")]
pub trait LayerNormLayer<B: Backend>: NormForward<B> {
    /// `Class::new(config, device)`.
    fn new(config: &LayerNormConfig, device: &B::Device) -> Self;
}

/// Classes that fill `RmsNorm` slots ([`RmsNormSlot`](super::RmsNormSlot)).
#[slot_interface(crate = "crate")]
pub trait RmsNormLayer<B: Backend>: NormForward<B> {
    /// `Class::new(config, device)`.
    fn new(config: &RmsNormConfig, device: &B::Device) -> Self;
}

/// The any-rank `forward` of a norm slot's trait object.
macro_rules! any_rank_forward {
    ($interface:ident) => {
        impl<B: Backend> dyn $interface<B> + '_ {
            /// `[.., d_model] -> [.., d_model]`, like the Burn norm's `forward`.
            pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
                any_rank(x, |x| self.forward_2d(x), |x| self.forward_3d(x))
            }
        }
    };
}

any_rank_forward!(LayerNormLayer);
any_rank_forward!(RmsNormLayer);

/// `NormForward` for a Burn norm: its own `forward` at both ranks.
macro_rules! burn_norm_forward {
    ($norm:ident) => {
        impl<B: Backend> NormForward<B> for $norm<B> {
            fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
                self.forward(x)
            }

            fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
                self.forward(x)
            }
        }
    };
}

burn_norm_forward!(LayerNorm);
burn_norm_forward!(RmsNorm);
