//! Loading Llama checkpoints: the model's default conversions and base model prefix for
//! burn-patcher's loader, and `from_pretrained`.

use std::path::Path;

use burn::prelude::*;
use patcher_burn::Patcher;
use patcher_burn::{LoadOptions, Loaded};

use super::config::LlamaConfig;
use super::model::{LlamaForCausalLM, LlamaModel};
use crate::common::pretrained::{self, impl_pretrained_model};
use crate::error::PretrainedError;

// The causal LM loads a checkpoint as is; the bare model loads its `model.` keys.
impl_pretrained_model!(
    super::conversions::default_weight_conversions => LlamaForCausalLM, LlamaModel
);

impl<B: Backend> LlamaForCausalLM<B> {
    /// transformers' `LlamaForCausalLM.from_pretrained(path, patcher=patcher)`: reads
    /// `config.json` next to the weights (`path` is the checkpoint folder, a weights file, or a
    /// sharded index), builds the model with `patcher`'s substitutions and loads the weights
    /// through the default conversions as `patcher` changes them.
    ///
    /// The result carries the load report and the conversions used (for
    /// [`save_pretrained`](patcher_burn::save_pretrained)).
    pub fn from_pretrained(
        path: impl AsRef<Path>,
        patcher: &Patcher<B>,
        device: &B::Device,
        options: &LoadOptions,
    ) -> Result<Loaded<Self>, PretrainedError> {
        pretrained::from_pretrained(
            path.as_ref(),
            patcher,
            device,
            options,
            LlamaConfig::from_file,
            Self::build,
        )
    }
}
