//! The `config.json` fields every decoder family reads (sizes, heads, activation, norm epsilon,
//! RoPE, ...): parsed with the family's transformers defaults, resolved and checked once here.
//! A family's own raw config embeds [`RawCore`] with `#[serde(flatten)]` and adds its fields;
//! the family copies the fields as they are or through [`RawCore`]'s resolving getters.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::activation::Activation;
use super::rope::RopeParameters;
use crate::error::ConfigError;

/// transformers' dataclass defaults of the shared fields where the families differ (the others
/// have the same default everywhere, see [`RawCore`]'s `Default`).
pub(crate) trait CoreDefaults {
    /// The `model_type` a config of this family must have when it names one.
    const MODEL_TYPE: &'static str;
    /// `vocab_size`.
    const VOCAB_SIZE: usize;
    /// `hidden_size`.
    const HIDDEN_SIZE: usize;
    /// `intermediate_size`.
    const INTERMEDIATE_SIZE: usize;
    /// `num_hidden_layers`.
    const NUM_HIDDEN_LAYERS: usize;
    /// `num_attention_heads`.
    const NUM_ATTENTION_HEADS: usize;
    /// `num_key_value_heads` (`None`: as many as the attention heads).
    const NUM_KEY_VALUE_HEADS: Option<usize>;
    /// `max_position_embeddings`.
    const MAX_POSITION_EMBEDDINGS: usize;
}

/// The shared fields as `config.json` writes them, absent ones at `D`'s defaults.
///
/// Generic over the defaults because a flattened field is deserialised on its own: the family
/// struct's `#[serde(default)]` does not reach inside it.
#[derive(Deserialize)]
#[serde(default, bound = "")]
pub(crate) struct RawCore<D: CoreDefaults> {
    model_type: Option<String>,
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_act: String,
    pub(crate) max_position_embeddings: usize,
    pub(crate) initializer_range: f64,
    pub(crate) rms_norm_eps: f64,
    pub(crate) tie_word_embeddings: bool,
    #[serde(skip)]
    defaults: PhantomData<D>,
}

impl<D: CoreDefaults> Default for RawCore<D> {
    fn default() -> Self {
        Self {
            model_type: None,
            vocab_size: D::VOCAB_SIZE,
            hidden_size: D::HIDDEN_SIZE,
            intermediate_size: D::INTERMEDIATE_SIZE,
            num_hidden_layers: D::NUM_HIDDEN_LAYERS,
            num_attention_heads: D::NUM_ATTENTION_HEADS,
            num_key_value_heads: D::NUM_KEY_VALUE_HEADS,
            head_dim: None,
            hidden_act: "silu".into(),
            max_position_embeddings: D::MAX_POSITION_EMBEDDINGS,
            initializer_range: 0.02,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: false,
            defaults: PhantomData,
        }
    }
}

impl<D: CoreDefaults> RawCore<D> {
    /// Checks `model_type` and the sizes [`Self::head_dim`] divides; call it before the
    /// resolving getters.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if let Some(model_type) = self.model_type.as_deref() {
            if model_type != D::MODEL_TYPE {
                return Err(ConfigError::Invalid(format!(
                    "model_type is `{model_type}`, expected `{}`",
                    D::MODEL_TYPE
                )));
            }
        }
        if self.num_attention_heads == 0 || self.hidden_size == 0 {
            return Err(ConfigError::Invalid(
                "hidden_size and num_attention_heads must be positive".into(),
            ));
        }
        Ok(())
    }

    /// `num_key_value_heads`, else `num_attention_heads`.
    pub(crate) fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// `head_dim`, else `hidden_size / num_attention_heads`.
    pub(crate) fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// `hidden_act`, parsed.
    pub(crate) fn hidden_act(&self) -> Result<Activation, ConfigError> {
        Activation::from_name(&self.hidden_act)
    }

    /// The RoPE parameters; `root` is the whole `config.json` object (RoPE reads several of its
    /// keys).
    pub(crate) fn rope(&self, root: &Map<String, Value>) -> Result<RopeParameters, ConfigError> {
        RopeParameters::from_config_json(root, self.max_position_embeddings)
    }
}

/// Parses `json`, which must be an object, into a family's raw config; returns the object too.
pub(crate) fn parse_config_json<R: DeserializeOwned>(
    json: &str,
) -> Result<(Map<String, Value>, R), ConfigError> {
    let value: Value = serde_json::from_str(json)?;
    let Value::Object(root) = &value else {
        return Err(ConfigError::Invalid(
            "config.json is not a JSON object".into(),
        ));
    };
    let raw = serde_json::from_value(value.clone())?;
    Ok((root.clone(), raw))
}

/// The checks every family's `validate` starts with: grouped-query heads divide evenly, and the
/// head width suits rotate-half RoPE.
pub(crate) fn validate_heads(
    num_attention_heads: usize,
    num_key_value_heads: usize,
    head_dim: usize,
) -> Result<(), ConfigError> {
    if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
        return Err(ConfigError::Invalid(format!(
            "num_attention_heads ({num_attention_heads}) must be a positive multiple of \
             num_key_value_heads ({num_key_value_heads})"
        )));
    }
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(ConfigError::Invalid(format!(
            "head_dim ({head_dim}) must be even and positive"
        )));
    }
    Ok(())
}
