//! The `config.json` fields every decoder family reads (sizes, heads, activation, norm epsilon,
//! RoPE, ...): parsed with the family's transformers defaults, resolved and checked once here.
//! A family's own raw config embeds [`RawCore`] with `#[serde(flatten)]` and adds its fields;
//! the family copies the fields as they are or through [`RawCore`]'s resolving getters.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::activation::Activation;
use super::attention::AttentionSpec;
use super::limits::{self, ParamCount, MAX_DIMENSION, MAX_HEADS, MAX_LAYERS};
use super::rope::RopeParameters;
use super::specs::{ExpertsSpec, MlpSpec, RouterSpec};
use crate::error::ConfigError;

/// transformers' dataclass defaults of the shared fields where the families differ (the others
/// have the same default everywhere, see [`RawCore`]'s `Default`): a family implements it on a
/// unit struct of its own.
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
    /// `rms_norm_eps`.
    const RMS_NORM_EPS: f64 = 1e-6;
    /// The config class's `default_theta`: RoPE's base when the config names none.
    const ROPE_THETA: f64 = super::rope::DEFAULT_THETA;
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
            rms_norm_eps: D::RMS_NORM_EPS,
            tie_word_embeddings: false,
            defaults: PhantomData,
        }
    }
}

impl<D: CoreDefaults> RawCore<D> {
    /// Checks `model_type` and every shared size and float (see [`limits`](super::limits)),
    /// before anything is computed from them (e.g. a family's per-layer lists); call it before
    /// the resolving getters.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if let Some(model_type) = self.model_type.as_deref() {
            if model_type != D::MODEL_TYPE {
                return Err(ConfigError::Invalid(format!(
                    "model_type is `{model_type}`, expected `{}`",
                    D::MODEL_TYPE
                )));
            }
        }
        // `head_dim()` divides by it.
        limits::size("num_attention_heads", self.num_attention_heads, MAX_HEADS)?;
        validate_core(&CoreFields {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads(),
            head_dim: self.head_dim(),
            max_position_embeddings: self.max_position_embeddings,
            initializer_range: self.initializer_range,
            rms_norm_eps: self.rms_norm_eps,
        })
    }

    /// `num_key_value_heads`, else `num_attention_heads`.
    pub(crate) fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// `head_dim`, else `hidden_size / num_attention_heads` (0 with no heads; [`Self::check`]
    /// rejects that).
    pub(crate) fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or_else(|| {
            self.hidden_size
                .checked_div(self.num_attention_heads)
                .unwrap_or(0)
        })
    }

    /// `hidden_act`, parsed.
    pub(crate) fn hidden_act(&self) -> Result<Activation, ConfigError> {
        Activation::from_name(&self.hidden_act)
    }

    /// The RoPE parameters; `root` is the whole `config.json` object (RoPE reads several of its
    /// keys).
    pub(crate) fn rope(&self, root: &Map<String, Value>) -> Result<RopeParameters, ConfigError> {
        RopeParameters::from_config_json_with_default_theta(
            root,
            self.max_position_embeddings,
            D::ROPE_THETA,
        )
    }
}

/// The fields every decoder family's config has, resolved and checked. A family's config holds
/// it as its `core` field (`config.core.hidden_size`), and builds its classes' shapes from it
/// ([`attention_spec`](Self::attention_spec), [`mlp_spec`](Self::mlp_spec), ...).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width (of each expert, in Mixtral; of the dense MLP, in Qwen2-MoE).
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (`num_attention_heads` when the config has none).
    pub num_key_value_heads: usize,
    /// Head width (`head_dim`, else `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// `hidden_act`.
    pub hidden_act: Activation,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// Std of the normal weight init.
    pub initializer_range: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Whether `lm_head` shares `embed_tokens.weight`.
    pub tie_word_embeddings: bool,
    /// RoPE parameters (v5 `rope_parameters`, or the hub's top-level `rope_theta` and
    /// `rope_scaling`).
    pub rope: RopeParameters,
}

impl DecoderConfig {
    /// Checks the shared fields (as a family's `validate` does first): sizes within
    /// [`limits`](super::limits), floats finite, heads consistent, RoPE implemented.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_core(&self.fields())?;
        self.rope.validate()
    }

    /// The fields [`validate_core`] and the size checks read.
    pub(crate) fn fields(&self) -> CoreFields {
        CoreFields {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            max_position_embeddings: self.max_position_embeddings,
            initializer_range: self.initializer_range,
            rms_norm_eps: self.rms_norm_eps,
        }
    }

    /// `(hidden_size, rms_norm_eps)`: what a [`DecoderNormInterface`](super::DecoderNormInterface)
    /// class is built from.
    pub fn norm_args(&self) -> (usize, f64) {
        (self.hidden_size, self.rms_norm_eps)
    }

    /// A gated MLP of this model, `intermediate_size` wide, biased or not.
    pub fn mlp_spec(&self, intermediate_size: usize, bias: bool) -> MlpSpec {
        MlpSpec {
            hidden_size: self.hidden_size,
            intermediate_size,
            bias,
            hidden_act: self.hidden_act,
            initializer_range: self.initializer_range,
        }
    }

    /// `num_experts` routed experts of this model, each `intermediate_size` wide.
    pub fn experts_spec(&self, num_experts: usize, intermediate_size: usize) -> ExpertsSpec {
        ExpertsSpec {
            num_experts,
            hidden_size: self.hidden_size,
            intermediate_size,
            hidden_act: self.hidden_act,
            initializer_range: self.initializer_range,
        }
    }

    /// A router choosing `top_k` of `num_experts` experts for each token of this model.
    pub fn router_spec(
        &self,
        num_experts: usize,
        top_k: usize,
        norm_topk_prob: bool,
    ) -> RouterSpec {
        RouterSpec {
            num_experts,
            hidden_size: self.hidden_size,
            top_k,
            norm_topk_prob,
            initializer_range: self.initializer_range,
        }
    }

    /// The attention shape of a layer with these biases and this sliding window.
    pub fn attention_spec(
        &self,
        qkv_bias: bool,
        o_bias: bool,
        sliding_window: Option<usize>,
    ) -> AttentionSpec {
        AttentionSpec::new(self.hidden_size, self.num_attention_heads)
            .with_kv_heads(self.num_key_value_heads)
            .with_head_dim(self.head_dim)
            .with_qkv_bias(qkv_bias)
            .with_o_bias(o_bias)
            .with_initializer_range(self.initializer_range)
            .with_sliding_window(sliding_window)
    }
}

impl<D: CoreDefaults> RawCore<D> {
    /// [Checks](Self::check) the shared fields and resolves them; `root` is the whole
    /// `config.json` object (RoPE reads several of its keys).
    pub(crate) fn resolve(&self, root: &Map<String, Value>) -> Result<DecoderConfig, ConfigError> {
        self.check()?;
        Ok(DecoderConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads(),
            head_dim: self.head_dim(),
            hidden_act: self.hidden_act()?,
            max_position_embeddings: self.max_position_embeddings,
            initializer_range: self.initializer_range,
            rms_norm_eps: self.rms_norm_eps,
            tie_word_embeddings: self.tie_word_embeddings,
            rope: self.rope(root)?,
        })
    }
}

/// Fails unless `config.json`'s `model_type` (the whole object `root`), when it names one, is
/// `expected`: a config of another family is [`ConfigError::Invalid`].
pub(crate) fn check_model_type(
    root: &Map<String, Value>,
    expected: &str,
) -> Result<(), ConfigError> {
    let named = root.get("model_type").filter(|v| !v.is_null());
    match named.filter(|v| v.as_str() != Some(expected)) {
        Some(kind) => Err(ConfigError::Invalid(format!(
            "model_type is {kind}, expected \"{expected}\""
        ))),
        None => Ok(()),
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

/// The shared fields of a resolved config, for [`validate_core`].
pub(crate) struct CoreFields {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) num_key_value_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) max_position_embeddings: usize,
    pub(crate) initializer_range: f64,
    pub(crate) rms_norm_eps: f64,
}

impl CoreFields {
    /// `[vocab_size, hidden_size, num_hidden_layers]`, what a model size is reported with.
    pub(crate) fn sizes(&self) -> [usize; 3] {
        [self.vocab_size, self.hidden_size, self.num_hidden_layers]
    }
}

/// The parameters every decoder family has: embeddings, `lm_head` unless tied, the final norm
/// and two norms per layer, q/k/v/o projections (with q/k/v biases if `qkv_bias`). The family
/// adds its MLP.
pub(crate) fn decoder_params(
    core: &CoreFields,
    tie_word_embeddings: bool,
    qkv_bias: bool,
) -> Result<ParamCount, ConfigError> {
    let l = core.num_hidden_layers;
    let hidden = ("hidden_size", core.hidden_size);
    let heads = ("num_attention_heads", core.num_attention_heads);
    let kv = ("num_key_value_heads", core.num_key_value_heads);
    let head_dim = ("head_dim", core.head_dim);
    let mut p = ParamCount::default();
    let embed = [("vocab_size", core.vocab_size), hidden];
    p.add(if tie_word_embeddings { 1 } else { 2 }, &embed)?;
    p.add(1 + 2 * l, &[hidden])?;
    p.add(2 * l, &[heads, head_dim, hidden])?; // q, o
    p.add(2 * l, &[kv, head_dim, hidden])?; // k, v
    if qkv_bias {
        p.add(l, &[heads, head_dim])?;
        p.add(2 * l, &[kv, head_dim])?;
    }
    Ok(p)
}

/// The checks every family's `validate` starts with: each shared size positive and within
/// [`limits`](super::limits), the floats finite and in range, the heads consistent.
pub(crate) fn validate_core(c: &CoreFields) -> Result<(), ConfigError> {
    limits::size("vocab_size", c.vocab_size, MAX_DIMENSION)?;
    limits::size("hidden_size", c.hidden_size, MAX_DIMENSION)?;
    limits::size("num_hidden_layers", c.num_hidden_layers, MAX_LAYERS)?;
    limits::size("num_attention_heads", c.num_attention_heads, MAX_HEADS)?;
    limits::size("num_key_value_heads", c.num_key_value_heads, MAX_HEADS)?;
    limits::size("head_dim", c.head_dim, MAX_DIMENSION)?;
    limits::size(
        "max_position_embeddings",
        c.max_position_embeddings,
        usize::MAX,
    )?;
    limits::float("rms_norm_eps", c.rms_norm_eps, true)?;
    limits::float("initializer_range", c.initializer_range, false)?;
    validate_heads(c.num_attention_heads, c.num_key_value_heads, c.head_dim)
}

/// Grouped-query heads divide evenly, and the head width suits rotate-half RoPE.
fn validate_heads(
    num_attention_heads: usize,
    num_key_value_heads: usize,
    head_dim: usize,
) -> Result<(), ConfigError> {
    if num_key_value_heads == 0 || !num_attention_heads.is_multiple_of(num_key_value_heads) {
        return Err(ConfigError::Field {
            field: "num_key_value_heads".into(),
            value: num_key_value_heads.to_string(),
            reason: format!(
                "num_attention_heads ({num_attention_heads}) must be a positive multiple of it"
            ),
        });
    }
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(ConfigError::Field {
            field: "head_dim".into(),
            value: head_dim.to_string(),
            reason: "must be even and positive (rotate-half RoPE)".into(),
        });
    }
    Ok(())
}
