//! transformers' Auto classes: [`AutoModelForCausalLm`] and [`AutoModel`] read a checkpoint's
//! `config.json`, pick the family its `model_type` names, and load it with a [`Patch`], so one
//! call loads any family without naming it. A user's family joins with
//! [`register`](AutoRegistry::register), as transformers' `AutoModelForCausalLM.register`.
//!
//! A family is a model type implementing [`FamilyModel`] (config type and constructor), plus
//! [`CausalLm`] for the causal-LM registry; its config implements [`FamilyConfig`]. The loaded
//! model comes back as a trait object ([`LoadedCausalLm`], [`LoadedModel`]): forward, report,
//! slots and save, whichever family it is.
//!
//! [`Patch`]: crate::replacements::Patch

mod family;
mod loaded;
mod registry;

pub use crate::common::CausalLm;
pub use family::{FamilyConfig, FamilyModel};
pub use loaded::{LoadedCausalLm, LoadedModel};
pub use registry::{read_model_type, AutoModel, AutoModelForCausalLm, AutoRegistry, IntoLoaded};
