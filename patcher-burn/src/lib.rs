//! # patcher-burn
//!
//! The Burn side of burn-patcher: substitutable module slots, building a model with a
//! [`Patcher`](patcher_core::Patcher)'s substitutions, and loading converted safetensors weights.

#![warn(missing_docs)]

mod build;
mod load;
mod slot;

pub use build::{replacement, BuildContext, BuildError};
pub use load::{
    from_pretrained, load_checkpoint, load_into, model_params, save_pretrained, Layout, LoadError,
    LoadOptions, LoadProgress, Loaded, ParamInfo, ParamKind, PretrainedModel,
};
pub use slot::{
    list_slots, load_file_checked, load_record_checked, Implements, InterfaceKey,
    LoadRecordError, Patchable, RecordMismatch, Slot, SlotInfo, SlotInterface, SlotRecord,
    SlotRecordItem, TensorKind, MAX_RANK,
};

/// What `#[derive(Patchable)]` and `#[slot_interface]` expand to refers to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use burn;
}
