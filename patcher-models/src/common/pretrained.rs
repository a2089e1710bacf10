//! What every family's loading code shares: `from_pretrained` (config, build, load) and the
//! `PretrainedModel` impls of its causal LM and bare model.

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

/// `PretrainedModel` for a family's `XxxForCausalLM` and `XxxModel`: the family's default
/// conversions, and `"model"` as the base model prefix (transformers'
/// `XxxPreTrainedModel.base_model_prefix`; on the bare model, it lets a causal-LM checkpoint's
/// `model.` keys load). A macro because the impls are of a foreign trait, one per type.
macro_rules! impl_pretrained_model {
    ($conversions:path => $($model:ident),+) => {$(
        impl<B: burn::prelude::Backend> patcher_burn::PretrainedModel<B> for $model<B> {
            fn weight_conversions() -> Vec<patcher_core::WeightTransform> {
                $conversions()
            }

            fn base_model_prefix() -> Option<&'static str> {
                Some("model")
            }

            fn keys_to_ignore_on_load_unexpected() -> Vec<String> {
                // Older checkpoints kept RoPE's inverse frequencies as a buffer; ours are
                // computed from the config.
                vec![r"rotary_emb\.inv_freq$".to_string()]
            }
        }
    )+};
}

/// A family's loading glue: [`impl_pretrained_model!`] for its causal LM and bare model, both
/// as [`FamilyModel`]s of `$config` (a [`FamilyConfig`] read with its `from_file`), the causal
/// LM as a [`CausalLm`](crate::auto::CausalLm), and the causal LM's `from_pretrained`.
macro_rules! pretrained_family {
    ($conversions:path => $lm:ident, $model:ident, $config:ident) => {
        $crate::common::pretrained::impl_pretrained_model!($conversions => $lm, $model);

        impl $crate::auto::FamilyConfig for $config {
            fn from_file(path: &std::path::Path) -> Result<Self, patcher_core::ConfigError> {
                $config::from_file(path)
            }
        }

        impl<B: burn::prelude::Backend> $crate::auto::FamilyModel<B> for $lm<B> {
            type Config = $config;

            fn build(config: &$config, ctx: &patcher_burn::BuildContext<'_, B>) -> Self {
                $lm::build(config, ctx)
            }
        }

        impl<B: burn::prelude::Backend> $crate::auto::FamilyModel<B> for $model<B> {
            type Config = $config;

            fn build(config: &$config, ctx: &patcher_burn::BuildContext<'_, B>) -> Self {
                $model::new(config, ctx)
            }
        }

        impl<B: burn::prelude::Backend> $crate::auto::CausalLm<B> for $lm<B> {
            fn forward(
                &self,
                input_ids: burn::prelude::Tensor<B, 2, burn::prelude::Int>,
            ) -> burn::prelude::Tensor<B, 3> {
                $lm::forward(self, input_ids)
            }
        }

        impl<B: burn::prelude::Backend> $lm<B> {
            #[doc = concat!("transformers' `", stringify!($lm), ".from_pretrained(path, patcher=patcher)`:")]
            /// reads `config.json` next to the weights (`path` is the checkpoint folder, a weights
            /// file, or a sharded index), builds the model with `patcher`'s substitutions and
            /// loads the weights through the default conversions as `patcher` changes them (a
            /// checkpoint in a default converter's converted layout runs it backwards).
            ///
            /// The result carries the load report and the conversions used (for
            /// [`save_pretrained`](patcher_burn::save_pretrained)).
            pub fn from_pretrained(
                path: impl AsRef<std::path::Path>,
                patcher: &patcher_burn::Patcher<B>,
                device: &B::Device,
                options: &patcher_burn::LoadOptions,
            ) -> Result<patcher_burn::Loaded<Self>, patcher_burn::LoadError> {
                $crate::common::pretrained::from_pretrained(path.as_ref(), patcher, device, options)
            }
        }
    };
}

pub(crate) use {impl_pretrained_model, pretrained_family};
