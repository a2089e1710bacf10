//! # patcher-burn
//!
//! The Burn side of burn-patcher: substitutable module slots, the [`Patcher`] that decides what
//! fills them while a model is built, and loading (and saving) converted safetensors weights.
//!
//! ## Slots
//!
//! - A model author declares an interface with `#[slot_interface]` on a trait generic over the
//!   backend: what the parent calls (methods or supertraits), and `fn new(<args>, device) ->
//!   Self;`, the constructor every class of the interface has (each class writes it once, as its
//!   own inherent `new`).
//! - Classes are Burn module structs with `#[derive(Module, Patchable)]`; a class that fills
//!   slots says so with `#[patchable(implements(Trait))]` (checked at compile time: it
//!   implements the trait on every backend and its `new` takes the interface's arguments). A
//!   list-shaped class whose items sit at its own path is `#[patchable(transparent)]`.
//! - A field `Slot<B, dyn Trait<B>>` is built in the model's constructor with
//!   [`Slot::build::<Original<B>>(ctx, args)`](Slot::build) from a [`BuildContext`]. The Burn
//!   layers models use most have ready interfaces in [`layers`] (`LinearSlot<B>`, ...).
//! - [`Patcher::replace::<Original<B>, Replacement<B>>()`](Patcher::replace) maps a class by
//!   type; names, regexes and slot paths are mapped by the other [`Patcher`] calls.
//!   [`BuildContext::build`] runs the constructor and reports every mapping error at once;
//!   [`list_slots`] lists path, class, original class and interface.
//!
//! A slot is a complete Burn module: parameter paths of the class inside, records with the class
//! name (checked on load: [`load_record_checked`]), device moves, and autodiff (`valid()` and
//! `from_inner`; see [`Slot`]'s `AutodiffModule` impl for the one documented limit). The facade
//! crate `burn-patcher` has a complete, runnable example.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod layers;
mod load;
mod parallel;
mod patcher;
mod save;
mod slot;
mod store;
mod visit;

#[cfg(feature = "collective")]
#[cfg_attr(docsrs, doc(cfg(feature = "collective")))]
pub use burn_collective;
pub use load::backend_quant_scheme;
pub use load::{
    load_with, model_params, plan_with, Layout, LinearLayout, LoadError, LoadOptions, LoadPlan,
    LoadProgress, LoadSpec, Loaded, NonFiniteCount, ParamInfo, ParamKind, Pretrained,
    PretrainedModel, Quantization, QuantizeError, QuantizeTargets, MAX_LOAD_THREADS,
};
pub use load::{model_params_with, TorchLayout, TorchLayouts};
pub use parallel::{
    module_device, to_device_via_host, AllReduce, DeviceMap, DeviceMapError, PeerSum,
    TensorParallelPeer,
};
#[cfg(feature = "collective")]
#[cfg_attr(docsrs, doc(cfg(feature = "collective")))]
pub use parallel::{Collective, PeerJoinError};
pub use patcher::Patcher;
/// `#[derive(Patchable)]` and `#[slot_interface]` (use `crate = "patcher_burn"` when naming this
/// crate directly rather than the `burn-patcher` facade).
pub use patcher_derive::{slot_interface, Patchable};
pub use save::{
    save_model, save_pretrained, save_pretrained_with, save_tensor_parallel, SaveError, SaveOptions,
};
pub use slot::{
    list_slots, load_file_checked, load_record_checked, replacement, BuildContext, BuildError,
    BuildOptions, ClassReplacement, Implements, InterfaceKey, LoadRecordError, OriginalClass,
    Patchable, RecordMismatch, Slot, SlotInfo, SlotInterface, SlotRecord, SlotRecordItem, MAX_RANK,
};
pub use store::{PatcherStore, StoreError};

/// What `#[derive(Patchable)]` and `#[slot_interface]` expand to refers to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use burn;
}

/// The README's examples, run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
