//! `MixtralConfig`, read from a checkpoint's `config.json` with transformers 5.23's defaults:
//! v5 style (`rope_parameters`, `dtype`) or hub style (top-level `rope_theta`, `torch_dtype`).

use std::path::Path;

use serde::Deserialize;

use crate::common::config::decoder_params;
use crate::common::config::{parse_config_json, CoreDefaults, RawCore};
use crate::common::limits::{self, ModelSize, SizedConfig, MAX_DIMENSION};
use crate::common::{AttentionSpec, DecoderConfig, ExpertsSpec, RouterSpec, TensorParallelConfig};
use crate::error::{read_config_file, ConfigError};
use patcher_core::plan::TensorParallel;

/// The fields of transformers' `MixtralConfig` that the model reads, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtralConfig {
    /// The fields every family has (the config derefs to them); `intermediate_size` is each
    /// expert's width.
    pub core: DecoderConfig,
    /// Window of every layer's attention (`None`: full causal attention).
    pub sliding_window: Option<usize>,
    /// Experts per token (`k`).
    pub num_experts_per_tok: usize,
    /// Routed experts (`num_local_experts`, alias `num_experts`).
    pub num_local_experts: usize,
}

/// transformers' `MixtralConfig` defaults of the fields every family has.
struct MixtralDefaults;

impl CoreDefaults for MixtralDefaults {
    const MODEL_TYPE: &'static str = "mixtral";
    const VOCAB_SIZE: usize = 32000;
    const HIDDEN_SIZE: usize = 4096;
    const INTERMEDIATE_SIZE: usize = 14336;
    const NUM_HIDDEN_LAYERS: usize = 32;
    const NUM_ATTENTION_HEADS: usize = 32;
    const NUM_KEY_VALUE_HEADS: Option<usize> = Some(8);
    const MAX_POSITION_EMBEDDINGS: usize = 4096 * 32;
    const RMS_NORM_EPS: f64 = 1e-5;
    const ROPE_THETA: f64 = 1e6;
}

/// `config.json` as written; `None` where absent (transformers' defaults are filled in below).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    #[serde(flatten)]
    core: RawCore<MixtralDefaults>,
    sliding_window: Option<usize>,
    num_experts_per_tok: Option<usize>,
    #[serde(alias = "num_experts")]
    num_local_experts: Option<usize>,
}

impl TensorParallelConfig for MixtralConfig {
    fn tensor_parallel(
        &self,
        rank: usize,
        world: usize,
    ) -> Result<(Self, TensorParallel), ConfigError> {
        let (core, plan) = self.core.tensor_parallel(rank, world)?;
        Ok((Self { core, ..self.clone() }, plan))
    }
}

impl MixtralConfig {
    /// transformers' `model_type` of the family.
    pub const MODEL_TYPE: &'static str = MixtralDefaults::MODEL_TYPE;

    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_json_str(&read_config_file(path.as_ref())?)
    }

    /// Parses and validates a config JSON string.
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        let (root, raw) = parse_config_json::<Raw>(json)?;
        let config = Self {
            core: raw.core.resolve(&root)?,
            sliding_window: raw.sliding_window,
            num_experts_per_tok: raw.num_experts_per_tok.unwrap_or(2),
            num_local_experts: raw.num_local_experts.unwrap_or(8),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values are consistent and within [`limits`](crate::common::limits);
    /// `from_json_str` calls it, call it again after editing fields by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.core.validate()?;
        let (experts, k) = (self.num_local_experts, self.num_experts_per_tok);
        limits::experts("num_local_experts", experts, k)?;
        limits::size(
            "intermediate_size",
            self.core.intermediate_size,
            MAX_DIMENSION,
        )?;
        if let Some(window) = self.sliding_window {
            limits::size("sliding_window", window, usize::MAX)?;
        }
        self.model_size().map(drop)
    }

    /// The attention shape (the same for every layer; no biases).
    pub fn attention_spec(&self, _layer_idx: usize) -> AttentionSpec {
        self.core.attention_spec(false, false, self.sliding_window)
    }

    /// The routed experts' shape.
    pub fn experts_spec(&self) -> ExpertsSpec {
        let c = &self.core;
        c.experts_spec(self.num_local_experts, c.intermediate_size)
    }

    /// The router's shape (top-k probabilities always renormalised, as in transformers).
    pub fn router_spec(&self) -> RouterSpec {
        let (experts, k) = (self.num_local_experts, self.num_experts_per_tok);
        self.core.router_spec(experts, k, true)
    }
}

impl SizedConfig for MixtralConfig {
    fn model_size(&self) -> Result<ModelSize, ConfigError> {
        let core = self.core.fields();
        let mut p = decoder_params(&core, self.core.tie_word_embeddings, false)?;
        let (l, hidden) = (
            self.core.num_hidden_layers,
            ("hidden_size", self.core.hidden_size),
        );
        let experts = ("num_local_experts", self.num_local_experts);
        let inter = ("intermediate_size", self.core.intermediate_size);
        p.add(l, &[experts, hidden])?; // router
        p.add(3 * l, &[experts, inter, hidden])?; // experts' gate, up, down
        p.finish(
            core.sizes(),
            Some(("num_local_experts", self.num_local_experts)),
        )
    }
}
