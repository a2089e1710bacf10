//! What makes a model type a family the Auto classes can load: its config (read, sized,
//! patchable) and how it is built.

use std::path::Path;

use burn::prelude::*;
use patcher_burn::{BuildContext, BuildError, Patcher, PretrainedModel};
use patcher_core::ConfigError;

use crate::common::limits::SizedConfig;
use crate::replacements::PatchTarget;

/// A family's `config.json`: read and validated from a file, sized before anything is allocated
/// ([`SizedConfig`]), and naming its `model_type` and patches ([`PatchTarget`]).
pub trait FamilyConfig: SizedConfig + PatchTarget + Sized {
    /// Reads and validates the config file at `path`.
    fn from_file(path: &Path) -> Result<Self, ConfigError>;
}

/// A model a family builds from its config (`LlamaForCausalLM`, `BertModel`, a user's model):
/// the loader's [`PretrainedModel`] plus its config type and constructor.
pub trait FamilyModel<B: Backend>: PretrainedModel<B> {
    /// The family's config.
    type Config: FamilyConfig;

    /// The model built through `ctx`, with the patcher's substitutions.
    fn build(config: &Self::Config, ctx: &BuildContext<'_, B>) -> Self;

    /// `Model(config)` with every original class, parameters initialised lazily (nothing is
    /// allocated until loaded or used).
    fn new(config: &Self::Config, device: &B::Device) -> Self
    where
        Self: Sized,
    {
        Self::build(config, &BuildContext::plain(device))
    }

    /// The model with `patcher`'s class substitutions.
    ///
    /// Errors when a `class_mapping` key names no substitutable class of this model (the
    /// message lists them, with a did-you-mean) or maps a class to a replacement of another
    /// interface.
    fn with_patcher(
        config: &Self::Config,
        patcher: &Patcher<B>,
        device: &B::Device,
    ) -> Result<Self, BuildError>
    where
        Self: Sized,
    {
        BuildContext::build(patcher, device, |ctx| Self::build(config, ctx))
    }
}
