//! # patcher-burn
//!
//! The Burn side of burn-patcher: substitutable module slots, building a model with a
//! [`Patcher`](patcher_core::Patcher)'s substitutions, and loading converted safetensors weights.
//!
//! ## Slots
//!
//! - A model author declares an interface with `#[slot_interface]` on a trait generic over the
//!   backend: the methods the parent calls, and `fn new(<args>, device) -> Self`, the constructor
//!   every class of the interface is built with.
//! - Classes are Burn module structs with `#[derive(Module, Patchable)]`; a class that fills
//!   slots says so with `#[patchable(implements(Trait))]` (checked at compile time: it implements
//!   the trait on every backend, so it takes the same constructor arguments).
//! - A field `Slot<B, dyn Trait<B>>` is built in the model's constructor with
//!   [`Slot::build::<Original<B>>(ctx, args)`](Slot::build) from a [`BuildContext`]; with a
//!   [`replacement`] mapped to the original's class name, the replacement is built instead.
//! - [`BuildContext::build`] runs the constructor and checks the mapping (an unknown key is an
//!   error listing the model's slot classes); [`list_slots`] lists `(path, class, replaced)`.
//!
//! A slot is a complete Burn module: parameter paths of the class inside, records with the class
//! name (checked on load: [`load_record_checked`]), device moves, and autodiff (`valid()` and
//! `from_inner`; see [`Slot`]'s `AutodiffModule` impl for the one documented limit). The facade
//! crate `burn-patcher` has a complete, runnable example.

#![warn(missing_docs)]

mod build;
mod load;
mod save;
mod slot;
mod visit;

pub use build::{replacement, BuildContext, BuildError};
pub use load::{
    from_pretrained, load_checkpoint, load_into, load_with, model_params, Layout, LinearLayout,
    LoadError, LoadOptions, LoadProgress, LoadSpec, Loaded, NonFiniteCount, ParamInfo, ParamKind,
    PretrainedModel, Quantization, QuantizeTargets,
};
pub use load::{model_params_with, TorchLayout, TorchLayouts};
pub use save::{save_model, save_pretrained, save_pretrained_with, SaveOptions};
pub use slot::{
    list_slots, load_file_checked, load_record_checked, Implements, InterfaceKey, LoadRecordError,
    Patchable, RecordMismatch, Slot, SlotInfo, SlotInterface, SlotRecord, SlotRecordItem, MAX_RANK,
};

/// What `#[derive(Patchable)]` and `#[slot_interface]` expand to refers to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use burn;
}
