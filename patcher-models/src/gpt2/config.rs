//! `GPT2Config`, read from a checkpoint's `config.json` with transformers 5.23's defaults.

use std::path::Path;

use burn::prelude::Backend;
use patcher_burn::Patcher;
use serde::Deserialize;

use crate::common::config::{check_model_type, parse_config_json};
use crate::common::limits::{self, ModelSize, ParamCount, SizedConfig};
use crate::common::limits::{MAX_DIMENSION, MAX_HEADS, MAX_LAYERS};
use crate::common::{Activation, AttentionSpec, MlpSpec};
use crate::error::{read_config_file, ConfigError};
use crate::replacements::{Patch, PatchTarget};

/// The fields of transformers' `GPT2Config` that the model reads, resolved and validated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Rows of the learned position table: the longest sequence.
    pub n_positions: usize,
    /// Model width.
    pub n_embd: usize,
    /// Blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// MLP width (`None`: `4 * n_embd`).
    pub n_inner: Option<usize>,
    /// The MLP's activation (`activation_function`, GPT-2's `gelu_new`).
    #[serde(skip)]
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_epsilon: f64,
    /// Standard deviation of the normal init.
    pub initializer_range: f64,
    /// Whether `lm_head` is `transformer.wte` (GPT-2's default).
    pub tie_word_embeddings: bool,
}

impl Default for Gpt2Config {
    fn default() -> Self {
        Self {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation: Activation::GeluTanh,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            tie_word_embeddings: true,
        }
    }
}

impl Gpt2Config {
    /// transformers' `model_type` of the family.
    pub const MODEL_TYPE: &'static str = "gpt2";

    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_json_str(&read_config_file(path.as_ref())?)
    }

    /// Parses and validates a config JSON string. The attention variants GPT-2 checkpoints
    /// rarely use (`scale_attn_by_inverse_layer_idx`, `reorder_and_upcast_attn`, cross-attention,
    /// unscaled attention) are [`ConfigError::Unsupported`].
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        let (root, mut config) = parse_config_json::<Self>(json)?;
        check_model_type(&root, Self::MODEL_TYPE)?;
        let get = |key: &str| root.get(key).filter(|v| !v.is_null());
        for (key, unsupported_when) in [
            ("scale_attn_by_inverse_layer_idx", true),
            ("reorder_and_upcast_attn", true),
            ("add_cross_attention", true),
            ("scale_attn_weights", false),
        ] {
            if get(key).and_then(|v| v.as_bool()) == Some(unsupported_when) {
                return Err(ConfigError::Unsupported(format!(
                    "{key} = {unsupported_when}"
                )));
            }
        }
        if let Some(act) = get("activation_function") {
            config.activation = Activation::from_name(act.as_str().unwrap_or_default())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks each size is positive and within [`limits`](crate::common::limits), the floats
    /// finite, the heads divide the width; `from_json_str` calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value, max) in [
            ("vocab_size", self.vocab_size, MAX_DIMENSION),
            ("n_positions", self.n_positions, MAX_DIMENSION),
            ("n_embd", self.n_embd, MAX_DIMENSION),
            ("n_layer", self.n_layer, MAX_LAYERS),
            ("n_head", self.n_head, MAX_HEADS),
            ("n_inner", self.inner_size(), MAX_DIMENSION),
        ] {
            limits::size(field, value, max)?;
        }
        limits::float("layer_norm_epsilon", self.layer_norm_epsilon, true)?;
        limits::float("initializer_range", self.initializer_range, false)?;
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(ConfigError::Field {
                field: "n_head".into(),
                value: self.n_head.to_string(),
                reason: format!("must divide n_embd ({})", self.n_embd),
            });
        }
        self.model_size().map(drop)
    }

    /// The MLP's width.
    pub fn inner_size(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Every block's attention: biased q/k/v and output, as many key/value heads as heads.
    pub fn attention_spec(&self) -> AttentionSpec {
        AttentionSpec::new(self.n_embd, self.n_head)
            .with_qkv_bias(true)
            .with_o_bias(true)
            .with_initializer_range(self.initializer_range)
    }

    /// Every block's MLP (`c_fc`, `c_proj`, biased).
    pub fn mlp_spec(&self) -> MlpSpec {
        MlpSpec {
            hidden_size: self.n_embd,
            intermediate_size: self.inner_size(),
            bias: true,
            hidden_act: self.activation,
            initializer_range: self.initializer_range,
        }
    }
}

impl SizedConfig for Gpt2Config {
    fn model_size(&self) -> Result<ModelSize, ConfigError> {
        let (l, h) = (self.n_layer, ("n_embd", self.n_embd));
        let inner = ("n_inner", self.inner_size());
        let mut p = ParamCount::default();
        p.add(1, &[("vocab_size", self.vocab_size), h])?;
        p.add(1, &[("n_positions", self.n_positions), h])?;
        p.add(4 * l, &[h, h])?; // c_attn (3), attention c_proj
        p.add(2 * l, &[h, inner])?; // c_fc, mlp c_proj
        p.add(9 * l + 2, &[h])?; // biases and LayerNorms
        if !self.tie_word_embeddings {
            p.add(1, &[("vocab_size", self.vocab_size), h])?;
        }
        p.finish([self.vocab_size, self.n_embd, l], None)
    }
}

/// GPT-2 takes none of the kit's patches (its attention is already fused).
impl PatchTarget for Gpt2Config {
    const MODEL_TYPE: &'static str = Gpt2Config::MODEL_TYPE;
    const PATCHES: Patch = Patch::NONE;

    fn patcher_for<B: Backend>(&self, _patch: Patch) -> Patcher<B> {
        Patcher::new()
    }
}
