//! Bounds on config values, so that no `config.json` can abort the process.
//!
//! An allocation that fails aborts a Rust process (there is no panic to catch), and an
//! overflowing size wraps silently in release builds. So every size of a config is checked
//! before anything is built, in two steps:
//!
//! 1. **On the config alone** (`validate`): every size is positive and at most a bound far
//!    above any published model ([`MAX_DIMENSION`], [`MAX_LAYERS`], [`MAX_HEADS`],
//!    [`MAX_EXPERTS`]); every float is finite and in range; every parameter tensor's element
//!    count, computed with checked arithmetic, is at most [`MAX_TENSOR_ELEMENTS`], and the
//!    model's at most [`MAX_PARAMETERS`]. Within these bounds no size computation overflows.
//! 2. **Against the checkpoint** (`LoadFamily::load`, before the model is built): the config's
//!    vocabulary, width, layer and expert counts must not exceed the checkpoint's (read from
//!    its header), and the config's parameter count must not exceed twice the checkpoint's
//!    element count (plus [`PARAMETER_SLACK`]). So the model allocated is never much larger
//!    than the weights on disk.
//!
//! Each failure is a [`ConfigError::Field`] or [`ConfigError::CheckpointMismatch`] naming the
//! field.
//!
//! The second step also applies to partial loads. To load part of a checkpoint (say one shard)
//! into a larger model on purpose, build the model yourself (`with_patcher`, after `validate`)
//! and load it with `Pretrained::from_path(dir).load_into(&model)`.

use patcher_core::Checkpoint;

use crate::error::ConfigError;

/// Largest width-like size (`vocab_size`, `hidden_size`, `intermediate_size`, `head_dim`,
/// expert widths): 2^24.
pub const MAX_DIMENSION: usize = 1 << 24;
/// Largest `num_hidden_layers`.
pub const MAX_LAYERS: usize = 1 << 10;
/// Largest `num_attention_heads` / `num_key_value_heads`.
pub const MAX_HEADS: usize = 1 << 12;
/// Largest `num_experts`.
pub const MAX_EXPERTS: usize = 1 << 12;
/// Largest element count of one parameter tensor: 2^36 (256 GiB in f32).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 36;
/// Largest parameter count of a model: 2^41 (about 2.2 trillion).
pub const MAX_PARAMETERS: u64 = 1 << 41;
/// Parameters a config may describe beyond twice the checkpoint's elements (norms, biases a
/// checkpoint may leave out).
pub const PARAMETER_SLACK: u64 = 1 << 20;

/// A positive integer field at most `max`.
pub(crate) fn size(field: &str, value: usize, max: usize) -> Result<(), ConfigError> {
    if value == 0 || value > max {
        return Err(ConfigError::Field {
            field: field.into(),
            value: value.to_string(),
            reason: format!("must be in 1..={max}"),
        });
    }
    Ok(())
}

/// A mixture of experts: `num_experts` within [`MAX_EXPERTS`], `k` (`num_experts_per_tok`) in
/// `1..=num_experts`; `experts_field` names the config's expert count.
pub(crate) fn experts(
    experts_field: &str,
    num_experts: usize,
    k: usize,
) -> Result<(), ConfigError> {
    size(experts_field, num_experts, MAX_EXPERTS)?;
    if k == 0 || k > num_experts {
        return Err(ConfigError::Invalid(format!(
            "num_experts_per_tok ({k}) must be in 1..={experts_field} ({num_experts})"
        )));
    }
    Ok(())
}

/// A finite float field; `positive` also requires `> 0`, else `>= 0`.
pub(crate) fn float(field: &str, value: f64, positive: bool) -> Result<(), ConfigError> {
    let ok = value.is_finite() && if positive { value > 0.0 } else { value >= 0.0 };
    if !ok {
        let range = if positive { "> 0" } else { ">= 0" };
        return Err(ConfigError::Field {
            field: field.into(),
            value: value.to_string(),
            reason: format!("must be a finite number {range}"),
        });
    }
    Ok(())
}

/// Counts a model's parameters tensor by tensor, with checked arithmetic.
#[derive(Debug, Default)]
pub(crate) struct ParamCount {
    total: u64,
    /// Per config field: its value and the parameters of the tensors it is the largest
    /// dimension of (what a parameter count too large for the checkpoint is blamed on).
    by_field: Vec<(String, usize, u64)>,
}

impl ParamCount {
    /// Adds `times` tensors whose shape is the product of `dims` (each a `(field, value)`);
    /// fails naming the largest field if one tensor has more than [`MAX_TENSOR_ELEMENTS`].
    pub(crate) fn add(&mut self, times: usize, dims: &[(&str, usize)]) -> Result<(), ConfigError> {
        let elements = dims
            .iter()
            .try_fold(1u64, |n, &(_, d)| n.checked_mul(d as u64))
            .filter(|&n| n <= MAX_TENSOR_ELEMENTS);
        let Some(elements) = elements else {
            let (field, value) = dims
                .iter()
                .max_by_key(|(_, d)| *d)
                .copied()
                .unwrap_or(("?", 0));
            let shape: Vec<String> = dims.iter().map(|(f, _)| f.to_string()).collect();
            return Err(ConfigError::Field {
                field: field.into(),
                value: value.to_string(),
                reason: format!(
                    "a parameter of shape [{}] would have more than {MAX_TENSOR_ELEMENTS} elements",
                    shape.join(", ")
                ),
            });
        };
        let added = elements.saturating_mul(times as u64);
        self.total = self.total.saturating_add(added);
        if let Some(&(field, value)) = dims.iter().max_by_key(|(_, d)| *d) {
            match self.by_field.iter_mut().find(|(f, _, _)| f == field) {
                Some(entry) => entry.2 = entry.2.saturating_add(added),
                None => self.by_field.push((field.to_string(), value, added)),
            }
        }
        Ok(())
    }

    /// The model's size, if the total is at most [`MAX_PARAMETERS`], for its `[vocab_size,
    /// hidden_size, num_hidden_layers]`.
    pub(crate) fn finish(
        self,
        [vocab_size, hidden_size, num_hidden_layers]: [usize; 3],
        num_experts: Option<(&'static str, usize)>,
    ) -> Result<ModelSize, ConfigError> {
        if self.total > MAX_PARAMETERS {
            return Err(ConfigError::Field {
                field: "num_hidden_layers".into(),
                value: num_hidden_layers.to_string(),
                reason: format!(
                    "the model would have {} parameters, more than {MAX_PARAMETERS}",
                    self.total
                ),
            });
        }
        let largest_field = self
            .by_field
            .into_iter()
            .max_by_key(|(_, _, parameters)| *parameters)
            .map(|(field, value, _)| (field, value))
            .unwrap_or_else(|| ("num_hidden_layers".to_string(), num_hidden_layers));
        Ok(ModelSize {
            parameters: self.total,
            largest_field,
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_experts,
        })
    }
}

/// What a config says about the model's size, compared with a checkpoint before building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSize {
    /// Parameters of the model the config describes.
    pub parameters: u64,
    /// The config field that sizes most of the parameters (the largest dimension of the
    /// tensors holding most of them, `intermediate_size` in most models), and its value: what a
    /// parameter count too large for the checkpoint is reported on.
    pub largest_field: (String, usize),
    /// `vocab_size`.
    pub vocab_size: usize,
    /// `hidden_size`.
    pub hidden_size: usize,
    /// `num_hidden_layers`.
    pub num_hidden_layers: usize,
    /// The expert count of a mixture-of-experts model, and the config field that sets it
    /// (`num_experts`; Mixtral's `num_local_experts`).
    pub num_experts: Option<(&'static str, usize)>,
}

/// A config whose model size can be told without building the model.
pub trait SizedConfig {
    /// The model's size, computed with checked arithmetic (see the [module docs](self)).
    fn model_size(&self) -> Result<ModelSize, ConfigError>;
}

/// Fails if the model `size` describes is larger than what `checkpoint` holds (see the
/// [module docs](self)). Reads the header only.
pub fn check_fits(size: &ModelSize, checkpoint: &Checkpoint) -> Result<(), ConfigError> {
    let mismatch =
        |field: &str, config: usize, checkpoint: String| ConfigError::CheckpointMismatch {
            field: field.into(),
            config: config.to_string(),
            checkpoint,
        };
    let embed = [
        "model.embed_tokens.weight",
        "embed_tokens.weight",
        "embeddings.word_embeddings.weight",
        "bert.embeddings.word_embeddings.weight",
    ]
    .iter()
    .find_map(|k| checkpoint.meta(k).map(|m| (k, m)));
    if let Some((key, meta)) = embed.filter(|(_, m)| m.shape.len() == 2) {
        let (vocab, hidden) = (meta.shape[0], meta.shape[1]);
        if size.vocab_size > vocab {
            return Err(mismatch(
                "vocab_size",
                size.vocab_size,
                format!("{key} of shape {:?}", meta.shape),
            ));
        }
        if size.hidden_size > hidden {
            return Err(mismatch(
                "hidden_size",
                size.hidden_size,
                format!("{key} of shape {:?}", meta.shape),
            ));
        }
    }
    let mut layers: Option<u64> = None;
    let mut experts: Option<u64> = None;
    for key in checkpoint.keys() {
        let rest = ["model.", "bert."]
            .iter()
            .find_map(|p| key.strip_prefix(p))
            .unwrap_or(key);
        // Decoders' `layers.N.`, BERT's `encoder.layer.N.`.
        let Some(rest) = ["layers.", "encoder.layer."]
            .iter()
            .find_map(|p| rest.strip_prefix(p))
        else {
            continue;
        };
        let (layer, rest) = rest.split_once('.').unwrap_or((rest, ""));
        if let Ok(layer) = layer.parse::<u64>() {
            layers = layers.max(Some(layer.saturating_add(1)));
        }
        if let Some(expert) = rest
            .strip_prefix("mlp.experts.")
            .or_else(|| rest.strip_prefix("block_sparse_moe.experts."))
            .and_then(|r| r.split('.').next())
            .and_then(|e| e.parse::<u64>().ok())
        {
            experts = experts.max(Some(expert.saturating_add(1)));
        } else if rest.starts_with("mlp.experts.") {
            // Fused experts: `[num_experts, ...]`.
            if let Some(n) = checkpoint.meta(key).and_then(|m| m.shape.first().copied()) {
                experts = experts.max(Some(n as u64));
            }
        }
    }
    if let Some(layers) = layers.filter(|&l| size.num_hidden_layers as u64 > l) {
        return Err(mismatch(
            "num_hidden_layers",
            size.num_hidden_layers,
            format!("{layers} layers (`layers.N.` or `encoder.layer.N.` keys)"),
        ));
    }
    if let (Some((field, config)), Some(found)) = (size.num_experts, experts) {
        if config as u64 > found {
            return Err(mismatch(
                field,
                config,
                format!("{found} experts in layer keys"),
            ));
        }
    }
    let elements: u64 = checkpoint
        .iter()
        .map(|t| {
            t.shape()
                .iter()
                .fold(1u64, |n, &d| n.saturating_mul(d as u64))
        })
        .fold(0u64, u64::saturating_add);
    if size.parameters > elements.saturating_mul(2).saturating_add(PARAMETER_SLACK) {
        let (field, value) = &size.largest_field;
        return Err(ConfigError::CheckpointMismatch {
            field: field.clone(),
            config: format!(
                "{value} (a model of {} parameters, most of them in tensors it sizes)",
                size.parameters
            ),
            checkpoint: format!("{elements} elements in all"),
        });
    }
    Ok(())
}
