//! # burn-patcher
//!
//! Model patching for [Burn](https://burn.dev): swap named module classes while a model is built
//! and convert a checkpoint's weights on the way in, so a stock transformers checkpoint loads into
//! a restructured model (fused QKV attention, experts as a list of linears, experimental variants).
//!
//! This facade re-exports the three crates of the workspace:
//! - [`patcher_core`]: checkpoint reader, key patterns, weight conversions, the [`Patcher`] and the
//!   conversion plan;
//! - [`patcher_burn`]: substitutable module slots, building with substitutions, loading and saving;
//! - `patcher_derive` (feature `derive`, on by default): `#[derive(Patchable)]` and
//!   `#[slot_interface]`.

pub use patcher_burn::*;
pub use patcher_core::*;
#[cfg(feature = "derive")]
pub use patcher_derive::{slot_interface, Patchable};

/// The crates behind this facade, for paths that must name one of them.
pub mod crates {
    pub use patcher_burn;
    pub use patcher_core;
}
