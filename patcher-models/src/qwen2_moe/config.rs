//! `Qwen2MoeConfig`, read from a checkpoint's `config.json` with transformers 5.23's defaults.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::common::config::decoder_params;
use crate::common::config::{parse_config_json, CoreDefaults, RawCore};
use crate::common::limits::{self, ModelSize, SizedConfig, MAX_DIMENSION};
use crate::common::tensor_parallel::share;
use crate::common::{
    AttentionSpec, DecoderConfig, ExpertsSpec, MlpSpec, RouterSpec, TensorParallelConfig,
};
use crate::error::{read_config_file, ConfigError};
use patcher_core::plan::TensorParallel;

/// The attention kind of one layer (`layer_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// `"full_attention"`: causal attention over every previous position.
    Full,
    /// `"sliding_attention"`: causal attention over the last `sliding_window` positions.
    Sliding,
}

/// The fields of transformers' `Qwen2MoeConfig` that the model reads, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2MoeConfig {
    /// The fields every decoder family has (`config.core.hidden_size`).
    pub core: DecoderConfig,
    /// Attention kind per layer.
    pub layer_types: Vec<LayerType>,
    /// Window of sliding-attention layers (`None` when sliding attention is off).
    pub sliding_window: Option<usize>,
    /// Every `decoder_sparse_step`-th layer is sparse (the others are dense).
    pub decoder_sparse_step: usize,
    /// Width of each routed expert.
    pub moe_intermediate_size: usize,
    /// Width of the shared expert.
    pub shared_expert_intermediate_size: usize,
    /// Experts per token (`k`).
    pub num_experts_per_tok: usize,
    /// Routed experts.
    pub num_experts: usize,
    /// Whether the top-k probabilities are renormalised to sum to 1.
    pub norm_topk_prob: bool,
    /// Layers with a dense MLP instead of a sparse block.
    pub mlp_only_layers: BTreeSet<usize>,
    /// Whether q/k/v projections have biases.
    pub qkv_bias: bool,
}

/// transformers' `Qwen2MoeConfig` defaults of the fields every family has.
struct Qwen2MoeDefaults;

impl CoreDefaults for Qwen2MoeDefaults {
    const MODEL_TYPE: &'static str = "qwen2_moe";
    const VOCAB_SIZE: usize = 151936;
    const HIDDEN_SIZE: usize = 2048;
    const INTERMEDIATE_SIZE: usize = 5632;
    const NUM_HIDDEN_LAYERS: usize = 24;
    const NUM_ATTENTION_HEADS: usize = 16;
    const NUM_KEY_VALUE_HEADS: Option<usize> = Some(16);
    const MAX_POSITION_EMBEDDINGS: usize = 32768;
}

/// `config.json` as written, with transformers' dataclass defaults.
#[derive(Deserialize)]
#[serde(default)]
struct Raw {
    #[serde(flatten)]
    core: RawCore<Qwen2MoeDefaults>,
    use_sliding_window: bool,
    sliding_window: Option<usize>,
    max_window_layers: usize,
    layer_types: Option<Vec<String>>,
    decoder_sparse_step: usize,
    moe_intermediate_size: usize,
    shared_expert_intermediate_size: usize,
    num_experts_per_tok: usize,
    num_experts: usize,
    norm_topk_prob: bool,
    mlp_only_layers: Option<Vec<usize>>,
    qkv_bias: bool,
}

impl Default for Raw {
    fn default() -> Self {
        Self {
            core: RawCore::default(),
            use_sliding_window: false,
            sliding_window: Some(4096),
            max_window_layers: 28,
            layer_types: None,
            decoder_sparse_step: 1,
            moe_intermediate_size: 1408,
            shared_expert_intermediate_size: 5632,
            num_experts_per_tok: 4,
            num_experts: 60,
            norm_topk_prob: false,
            mlp_only_layers: None,
            qkv_bias: true,
        }
    }
}

impl TensorParallelConfig for Qwen2MoeConfig {
    fn tensor_parallel(
        &self,
        rank: usize,
        world: usize,
    ) -> Result<(Self, TensorParallel), ConfigError> {
        let (core, plan) = self.core.tensor_parallel(rank, world)?;
        let peer = Self {
            core,
            moe_intermediate_size: share(
                "moe_intermediate_size",
                self.moe_intermediate_size,
                world,
            )?,
            shared_expert_intermediate_size: share(
                "shared_expert_intermediate_size",
                self.shared_expert_intermediate_size,
                world,
            )?,
            ..self.clone()
        };
        peer.validate()?;
        Ok((peer, plan))
    }
}

impl Qwen2MoeConfig {
    /// transformers' `model_type` of the family.
    pub const MODEL_TYPE: &'static str = Qwen2MoeDefaults::MODEL_TYPE;

    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_json_str(&read_config_file(path.as_ref())?)
    }

    /// Parses and validates a config JSON string.
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        let (root, raw) = parse_config_json::<Raw>(json)?;
        let core = raw.core.resolve(&root)?;
        // transformers' Qwen2MoeConfig.__post_init__: sliding window only if enabled, and the
        // default layer types alternate sliding/full below max_window_layers.
        let sliding_window = raw
            .sliding_window
            .filter(|_| raw.use_sliding_window)
            .filter(|&w| w > 0);
        let layer_types = match raw.layer_types {
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(LayerType::Full),
                    "sliding_attention" => Ok(LayerType::Sliding),
                    other => Err(ConfigError::Unsupported(format!("layer type `{other}`"))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => (0..core.num_hidden_layers)
                .map(|i| {
                    if (i + 1) % 2 == 1 && i < raw.max_window_layers && raw.use_sliding_window {
                        LayerType::Sliding
                    } else {
                        LayerType::Full
                    }
                })
                .collect(),
        };
        let config = Self {
            core,
            layer_types,
            sliding_window,
            decoder_sparse_step: raw.decoder_sparse_step,
            moe_intermediate_size: raw.moe_intermediate_size,
            shared_expert_intermediate_size: raw.shared_expert_intermediate_size,
            num_experts_per_tok: raw.num_experts_per_tok,
            num_experts: raw.num_experts,
            norm_topk_prob: raw.norm_topk_prob,
            mlp_only_layers: raw
                .mlp_only_layers
                .unwrap_or_default()
                .into_iter()
                .collect(),
            qkv_bias: raw.qkv_bias,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values are consistent and implemented; `from_json_str` calls it, call it again
    /// after editing fields by hand.
    ///
    /// Every size and float is checked against [`limits`](crate::common::limits), so no
    /// config can make building the model abort; errors name the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.core.validate()?;
        if self.decoder_sparse_step == 0 {
            // transformers divides by it (`(layer_idx + 1) % decoder_sparse_step`).
            return Err(ConfigError::Field {
                field: "decoder_sparse_step".into(),
                value: "0".into(),
                reason: "must be at least 1 (every n-th layer is sparse)".into(),
            });
        }
        if self.sparse_layers() > 0 {
            limits::experts("num_experts", self.num_experts, self.num_experts_per_tok)?;
        }
        for (field, value) in [
            ("intermediate_size", self.core.intermediate_size),
            ("moe_intermediate_size", self.moe_intermediate_size),
            (
                "shared_expert_intermediate_size",
                self.shared_expert_intermediate_size,
            ),
        ] {
            limits::size(field, value, MAX_DIMENSION)?;
        }
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.layer_types.len() != self.core.num_hidden_layers {
            return invalid(format!(
                "layer_types has {} entries for {} layers",
                self.layer_types.len(),
                self.core.num_hidden_layers
            ));
        }
        if self.layer_types.contains(&LayerType::Sliding) && self.sliding_window.is_none() {
            return invalid(
                "sliding_attention layers without use_sliding_window/sliding_window".into(),
            );
        }
        self.model_size().map(drop)
    }

    /// Whether layer `layer_idx` has a sparse MoE block rather than a dense `Qwen2MoeMLP`
    /// (transformers' `Qwen2MoeDecoderLayer` rule: not in `mlp_only_layers`, experts configured,
    /// and every `decoder_sparse_step`-th layer).
    pub fn is_sparse_layer(&self, layer_idx: usize) -> bool {
        !self.mlp_only_layers.contains(&layer_idx)
            && self.num_experts > 0
            && self.decoder_sparse_step > 0
            && (layer_idx + 1).is_multiple_of(self.decoder_sparse_step)
    }

    /// How many layers are sparse.
    pub fn sparse_layers(&self) -> usize {
        (0..self.core.num_hidden_layers)
            .filter(|&i| self.is_sparse_layer(i))
            .count()
    }

    /// The attention shape of layer `layer_idx`.
    pub fn attention_spec(&self, layer_idx: usize) -> AttentionSpec {
        let sliding_window = match self.layer_types.get(layer_idx) {
            Some(LayerType::Sliding) => self.sliding_window,
            _ => None,
        };
        self.core
            .attention_spec(self.qkv_bias, false, sliding_window)
    }

    /// A `Qwen2MoeMLP` `intermediate_size` wide (no biases): a dense layer's MLP
    /// (`config.core.intermediate_size`) or the shared expert
    /// (`shared_expert_intermediate_size`).
    pub fn mlp_spec(&self, intermediate_size: usize) -> MlpSpec {
        self.core.mlp_spec(intermediate_size, false)
    }

    /// The routed experts' shape.
    pub fn experts_spec(&self) -> ExpertsSpec {
        (self.core).experts_spec(self.num_experts, self.moe_intermediate_size)
    }

    /// The router's shape.
    pub fn router_spec(&self) -> RouterSpec {
        let (experts, k) = (self.num_experts, self.num_experts_per_tok);
        self.core.router_spec(experts, k, self.norm_topk_prob)
    }
}

impl SizedConfig for Qwen2MoeConfig {
    fn model_size(&self) -> Result<ModelSize, ConfigError> {
        let core = self.core.fields();
        let mut p = decoder_params(&core, self.core.tie_word_embeddings, self.qkv_bias)?;
        let (l, hidden) = (self.sparse_layers(), ("hidden_size", self.core.hidden_size));
        let dense = self.core.num_hidden_layers - l;
        p.add(
            3 * dense,
            &[("intermediate_size", self.core.intermediate_size), hidden],
        )?;
        let experts = ("num_experts", self.num_experts);
        let moe = ("moe_intermediate_size", self.moe_intermediate_size);
        let shared = (
            "shared_expert_intermediate_size",
            self.shared_expert_intermediate_size,
        );
        // Per sparse layer:
        p.add(l, &[hidden])?; // the shared expert's gate
        p.add(l, &[experts, hidden])?; // router
        p.add(3 * l, &[experts, moe, hidden])?; // experts' gate, up, down
        p.add(3 * l, &[shared, hidden])?; // shared expert
        p.finish(core.sizes(), Some(("num_experts", self.num_experts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_transformers() {
        let c = Qwen2MoeConfig::from_json_str(r#"{"num_hidden_layers": 2}"#).unwrap();
        assert_eq!(c.core.vocab_size, 151936);
        assert_eq!(c.core.head_dim, 128);
        assert_eq!((c.num_experts, c.num_experts_per_tok), (60, 4));
        assert_eq!(c.layer_types, vec![LayerType::Full; 2]);
        assert_eq!(c.sliding_window, None);
        assert_eq!(c.core.rope.rope_theta, 10000.0);
        assert!(c.qkv_bias && !c.norm_topk_prob);
    }

    #[test]
    fn dense_layers_follow_transformers() {
        let json = r#"{"num_hidden_layers": 6, "decoder_sparse_step": 2, "mlp_only_layers": [3]}"#;
        let c = Qwen2MoeConfig::from_json_str(json).unwrap();
        let sparse: Vec<usize> = (0..6).filter(|&i| c.is_sparse_layer(i)).collect();
        assert_eq!(sparse, [1, 5]);
        assert_eq!(c.sparse_layers(), 2);
        // No experts: every layer dense, and `num_experts_per_tok` is not checked against them.
        let c = Qwen2MoeConfig::from_json_str(r#"{"num_hidden_layers": 2, "num_experts": 0}"#);
        assert_eq!(c.unwrap().sparse_layers(), 0);
    }

    #[test]
    fn typed_errors() {
        let bad = Qwen2MoeConfig::from_json_str(
            r#"{"num_attention_heads": 16, "num_key_value_heads": 3}"#,
        );
        assert!(
            matches!(bad, Err(ConfigError::Field { field, .. }) if field == "num_key_value_heads")
        );
        let step = Qwen2MoeConfig::from_json_str(r#"{"decoder_sparse_step": 0}"#);
        assert!(
            matches!(step, Err(ConfigError::Field { field, .. }) if field == "decoder_sparse_step")
        );
        let wrong = Qwen2MoeConfig::from_json_str(r#"{"model_type": "llama"}"#);
        assert!(matches!(wrong, Err(ConfigError::Invalid(_))));
        assert!(matches!(
            Qwen2MoeConfig::from_json_str("[1]"),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            Qwen2MoeConfig::from_json_str("{"),
            Err(ConfigError::Json(_))
        ));
        let act = Qwen2MoeConfig::from_json_str(r#"{"hidden_act": "mish"}"#);
        assert!(matches!(act, Err(ConfigError::Unsupported(_))));
    }
}
