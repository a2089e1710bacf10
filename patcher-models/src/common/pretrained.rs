//! What every family's loading shares: [`LoadFamily::load`] on a [`Pretrained`] (read
//! `config.json`, check it against the checkpoint, build, load).

use burn::prelude::*;
use patcher_burn::{LoadError, Loaded, Pretrained};

use super::limits::{check_fits, SizedConfig};
use crate::auto::{FamilyConfig, FamilyModel};
use crate::error::config_path;

/// Loads a family's model from its checkpoint folder: [`Pretrained`] (from `patcher_burn`) with
/// the kit's `load`, which reads the model's config next to the weights.
///
/// ```no_run
/// use burn::backend::NdArray;
/// use patcher_burn::{LoadOptions, Pretrained};
/// use patcher_models::llama::LlamaForCausalLm;
/// use patcher_models::prelude::*;
///
/// let device = Default::default();
/// let loaded = Pretrained::<NdArray>::from_path("tests/fixtures/llama")
///     .options(LoadOptions::default())
///     .load::<LlamaForCausalLm<NdArray>>(&device)?;
/// # Ok::<(), patcher_burn::LoadError>(())
/// ```
pub trait LoadFamily<B: Backend> {
    /// transformers' `XxxForCausalLM.from_pretrained(path, patcher=...)`: reads `config.json`
    /// next to the weights (the path is the checkpoint folder, a weights file, or a sharded
    /// index), checks that the config fits the checkpoint's header before anything of the
    /// model's size is allocated, builds the model with the patcher's substitutions and loads
    /// the weights through the model's conversions as the patcher changes them.
    ///
    /// The result carries the load report and the conversions used (for
    /// [`save_pretrained`](patcher_burn::save_pretrained)).
    fn load<M: FamilyModel<B>>(&self, device: &B::Device) -> Result<Loaded<M>, LoadError>;

    /// [`load`](Self::load) with a config read already.
    fn load_with_config<M: FamilyModel<B>>(
        &self,
        config: &M::Config,
        device: &B::Device,
    ) -> Result<Loaded<M>, LoadError>;
}

impl<B: Backend> LoadFamily<B> for Pretrained<'_, B> {
    fn load<M: FamilyModel<B>>(&self, device: &B::Device) -> Result<Loaded<M>, LoadError> {
        let config = M::Config::from_file(&config_path(self.path()))?;
        self.load_with_config(&config, device)
    }

    fn load_with_config<M: FamilyModel<B>>(
        &self,
        config: &M::Config,
        device: &B::Device,
    ) -> Result<Loaded<M>, LoadError> {
        let size = config.model_size()?;
        // One open: the header checked against the config, then the same checkpoint loaded.
        self.with_checkpoint(|checkpoint| {
            check_fits(&size, checkpoint)?;
            let on_checkpoint = self.on_checkpoint(checkpoint);
            on_checkpoint.build(device, |ctx| M::build(config, ctx))
        })
    }
}
