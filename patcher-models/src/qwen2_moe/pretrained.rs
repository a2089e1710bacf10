//! Loading Qwen2Moe checkpoints: the model's default conversions and base model prefix for
//! burn-patcher's loader, and `from_pretrained`.

use std::path::Path;

use burn::prelude::*;
use patcher_burn::{LoadOptions, Loaded, PretrainedModel};
use patcher_core::{Patcher, WeightTransform};

use super::config::Qwen2MoeConfig;
use super::model::{Qwen2MoeForCausalLM, Qwen2MoeModel};
use crate::error::{config_path, PretrainedError};

impl<B: Backend> PretrainedModel<B> for Qwen2MoeForCausalLM<B> {
    /// transformers' `qwen2_moe` conversions (per-expert linears merged into the fused experts).
    fn weight_conversions() -> Vec<WeightTransform> {
        super::conversions::default_weight_conversions()
    }

    /// `"model"`, as transformers' `Qwen2MoePreTrainedModel.base_model_prefix`.
    fn base_model_prefix() -> Option<&'static str> {
        Some("model")
    }
}

impl<B: Backend> PretrainedModel<B> for Qwen2MoeModel<B> {
    /// transformers' `qwen2_moe` conversions (per-expert linears merged into the fused experts).
    fn weight_conversions() -> Vec<WeightTransform> {
        super::conversions::default_weight_conversions()
    }

    /// `"model"`: a causal-LM checkpoint's `model.` keys load into the bare model.
    fn base_model_prefix() -> Option<&'static str> {
        Some("model")
    }
}

impl<B: Backend> Qwen2MoeForCausalLM<B> {
    /// transformers' `Qwen2MoeForCausalLM.from_pretrained(path, patcher=patcher)`: reads
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
        let path = path.as_ref();
        let config = Qwen2MoeConfig::from_file(config_path(path))?;
        let loaded = patcher_burn::from_pretrained(
            path,
            patcher,
            device,
            |ctx| Self::build(&config, ctx),
            options,
        )?;
        Ok(loaded)
    }
}
