//! Slot interfaces for the Burn layers models use most, with Burn's own layers as the original
//! classes: a field becomes substitutable by changing its type, `Linear<B>` to
//! [`LinearSlot<B>`], and its construction, `config.init(device)` to
//! [`config.init_slot(ctx)`](InitSlot::init_slot); calls such as `self.q_proj.forward(x)` stay
//! as they are.
//!
//! | Burn layer (class name) | Interface | Built from | Slot type |
//! |---|---|---|---|
//! | `Linear` | [`LinearLayer`] ([`LinearForward`]) | `&LinearConfig` | [`LinearSlot`] |
//! | `LayerNorm` | [`LayerNormLayer`] ([`NormForward`]) | `&LayerNormConfig` | [`LayerNormSlot`] |
//! | `RmsNorm` | [`RmsNormLayer`] ([`NormForward`]) | `&RmsNormConfig` | [`RmsNormSlot`] |
//! | `Embedding` | [`EmbeddingLayer`] ([`EmbeddingForward`]) | `&EmbeddingConfig` | [`EmbeddingSlot`] |
//!
//! Besides the slots, [`Conv1D`] is GPT-2's `Conv1D` (a linear layer whose PyTorch weight is
//! stored `[in, out]`), with its PyTorch layout declared so that a stock GPT-2 checkpoint loads
//! into it without a Transpose conversion.
//!
//! A replacement (a LoRA or quantized linear, another norm) implements the forward trait and
//! `#[derive(Patchable)]` with `#[patchable(implements(patcher_burn::layers::LinearLayer))]`,
//! and has a `new(config: &LinearConfig, device: &B::Device)`; the [`Patcher`](crate::Patcher)
//! registers it with `replace::<Linear<B>, MyLinear<B>>()`.

mod conv1d;
mod embedding;
mod linear;
mod norm;
mod rank;

use burn::module::AutodiffModule;
use burn::nn::{
    Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, RmsNorm,
    RmsNormConfig,
};
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::slot::{
    BuildContext, Implements, InterfaceKey, OriginalClass, Patchable, Slot, SlotInterface,
};

pub(crate) use conv1d::conv1d as conv1d_torch_param;
pub use conv1d::{Conv1D, Conv1DConfig};
pub use embedding::{EmbeddingForward, EmbeddingLayer};
pub use linear::{LinearForward, LinearLayer};
pub use norm::{LayerNormLayer, NormForward, RmsNormLayer};
pub use rank::any_rank;

/// A substitutable `Linear` field.
pub type LinearSlot<B> = Slot<B, dyn LinearLayer<B>>;
/// A substitutable `LayerNorm` field.
pub type LayerNormSlot<B> = Slot<B, dyn LayerNormLayer<B>>;
/// A substitutable `RmsNorm` field.
pub type RmsNormSlot<B> = Slot<B, dyn RmsNormLayer<B>>;
/// A substitutable `Embedding` field.
pub type EmbeddingSlot<B> = Slot<B, dyn EmbeddingLayer<B>>;

/// `config.init_slot(ctx)`: the slot of a Burn layer's config, built through the context (the
/// Burn layer, or what the patcher maps to it), where `config.init(device)` built the layer.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::nn::LinearConfig;
/// use burn::prelude::*;
/// use patcher_burn::layers::InitSlot;
/// use patcher_burn::BuildContext;
///
/// let ctx = BuildContext::<NdArray>::plain(&Default::default());
/// let linear = LinearConfig::new(4, 2).init_slot(&ctx);
/// assert_eq!(linear.class_name(), "Linear");
/// let y = linear.forward(Tensor::<NdArray, 3>::ones([1, 3, 4], &Default::default()));
/// assert_eq!(y.dims(), [1, 3, 2]);
/// ```
pub trait InitSlot<B: Backend> {
    /// The slot type built.
    type Slot;

    /// Builds the slot through `ctx`.
    fn init_slot(&self, ctx: &BuildContext<'_, B>) -> Self::Slot;
}

/// Makes a Burn layer the original class of its interface: `Patchable`, `Implements` (built
/// with `config.init(device)`), `OriginalClass`, and `InitSlot` for its config.
macro_rules! burn_layer {
    ($layer:ident, $interface:ident, $config:ident, $slot:ident) => {
        impl<B: Backend> Patchable for $layer<B> {
            const CLASS_NAME: &'static str = stringify!($layer);
            type Backend = B;
            type WithBackend<X: Backend> = $layer<X>;

            fn into_with_backend(self) -> Self {
                self
            }

            fn valid<AB: AutodiffBackend>(module: &$layer<AB>) -> $layer<AB::InnerBackend> {
                AutodiffModule::valid(module)
            }

            fn from_inner<AB: AutodiffBackend>(module: $layer<AB::InnerBackend>) -> $layer<AB> {
                AutodiffModule::from_inner(module)
            }
        }

        impl<B: Backend> Implements<<dyn $interface<B> as SlotInterface>::Key> for $layer<B> {
            fn as_interface<X: Backend>(module: &$layer<X>) -> &(dyn $interface<X> + 'static) {
                module
            }

            fn as_interface_mut<X: Backend>(
                module: &mut $layer<X>,
            ) -> &mut (dyn $interface<X> + 'static) {
                module
            }

            fn construct<X: Backend>(
                config: <<dyn $interface<B> as SlotInterface>::Key as InterfaceKey>::Args<'_>,
                ctx: &BuildContext<'_, X>,
            ) -> $layer<X> {
                config.init(ctx.device())
            }
        }

        impl<B: Backend> OriginalClass for $layer<B> {
            type Interface = <dyn $interface<B> as SlotInterface>::Key;
        }

        impl<B: Backend> InitSlot<B> for $config {
            type Slot = $slot<B>;

            fn init_slot(&self, ctx: &BuildContext<'_, B>) -> $slot<B> {
                Slot::build::<$layer<B>>(ctx, self)
            }
        }
    };
}

burn_layer!(Linear, LinearLayer, LinearConfig, LinearSlot);
burn_layer!(LayerNorm, LayerNormLayer, LayerNormConfig, LayerNormSlot);
burn_layer!(RmsNorm, RmsNormLayer, RmsNormConfig, RmsNormSlot);
burn_layer!(Embedding, EmbeddingLayer, EmbeddingConfig, EmbeddingSlot);
