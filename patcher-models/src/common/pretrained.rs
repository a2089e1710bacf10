//! What every family's loading shares: `from_pretrained` (config, build, load), which
//! [`FamilyModel::from_pretrained`](crate::auto::FamilyModel::from_pretrained) runs.

use std::path::Path;

use burn::prelude::*;
use patcher_burn::{LoadError, LoadOptions, Loaded, Patcher};
use patcher_core::Checkpoint;

use super::limits::{check_fits, SizedConfig};
use crate::auto::{FamilyConfig, FamilyModel};
use crate::error::config_path;

/// `XxxForCausalLM.from_pretrained`: reads the `config.json` next to the weights at `path`, then
/// [`load_with_config`].
pub(crate) fn from_pretrained<B: Backend, M: FamilyModel<B>>(
    path: &Path,
    patcher: &Patcher<B>,
    device: &B::Device,
    options: &LoadOptions,
) -> Result<Loaded<M>, LoadError> {
    let config = M::Config::from_file(&config_path(path))?;
    load_with_config(path, &config, patcher, device, options)
}

/// Builds the model of `config` with `patcher`'s substitutions and loads the weights at `path`
/// through its default conversions as `patcher` changes them.
///
/// The config must fit the checkpoint ([`check_fits`]) before the model is built.
pub(crate) fn load_with_config<B: Backend, M: FamilyModel<B>>(
    path: &Path,
    config: &M::Config,
    patcher: &Patcher<B>,
    device: &B::Device,
    options: &LoadOptions,
) -> Result<Loaded<M>, LoadError> {
    // Plan, then build: the config's sizes are compared with the checkpoint's header before
    // anything of the model's size is allocated.
    let checkpoint = Checkpoint::open(path)?;
    check_fits(&config.model_size()?, &checkpoint)?;
    drop(checkpoint);
    patcher_burn::from_pretrained(path, patcher, device, |ctx| M::build(config, ctx), options)
}
