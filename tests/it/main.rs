//! The crate's integration tests, one module a concern, linked into one test binary (a Burn
//! test binary is tens of MB: one per file would multiply the build's disk and link time).

mod derive_ui;
mod patcher_keys;
#[path = "common/slot_model.rs"]
mod slot_model;
mod slots;
