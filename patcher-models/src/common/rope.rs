//! Rotary position embeddings exactly as transformers computes them: inverse frequencies from
//! the config's `rope_parameters`, `cos`/`sin` over `cat(freqs, freqs)`, and the rotate-half
//! convention (`x * cos + rotate_half(x) * sin`, `rotate_half(x) = cat(-x2, x1)`).
//!
//! This is not burn-nn's `RotaryEncoding`, which rotates interleaved pairs `(x0, x1), (x2, x3)`:
//! checkpoints trained with transformers pair dimension `i` with `i + head_dim / 2`.

use burn::prelude::*;
use serde_json::{Map, Value};

use super::layout::AttentionLayout;
use crate::error::ConfigError;

/// transformers' `RotaryEmbeddingConfigMixin.default_theta` (a family's config may override it,
/// see [`RopeParameters::from_config_json_with_default_theta`]).
pub const DEFAULT_THETA: f64 = 10_000.0;

/// How the inverse frequencies are derived (transformers' `rope_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// `"default"`: the original RoPE.
    Default,
    /// `"linear"`: inverse frequencies divided by `factor`.
    Linear {
        /// The scaling factor.
        factor: f64,
    },
    /// `"llama3"`: Llama 3.1's frequency-dependent smoothing.
    Llama3 {
        /// `factor` (8 in the original).
        factor: f64,
        /// `low_freq_factor` (1 in the original).
        low_freq_factor: f64,
        /// `high_freq_factor` (4 in the original).
        high_freq_factor: f64,
        /// `original_max_position_embeddings` (8192 in the original).
        original_max_position_embeddings: f64,
    },
    /// `"yarn"`: YaRN's NTK-by-parts interpolation, and cos/sin scaled by `attention_factor`.
    Yarn {
        /// How much the context is extended.
        factor: f64,
        /// The context length of pretraining.
        original_max_position_embeddings: f64,
        /// Rotations above which dimensions are extrapolated (default 32).
        beta_fast: f64,
        /// Rotations below which dimensions are interpolated (default 1).
        beta_slow: f64,
        /// The cos/sin scale: given, or `0.1 ln(factor) + 1` (with `mscale`/`mscale_all_dim`
        /// as transformers derives it).
        attention_factor: f64,
        /// Round the correction range outwards (default true).
        truncate: bool,
    },
}

/// The RoPE part of a config, standardised as transformers does (`rope_parameters`, or the
/// legacy `rope_scaling` object and top-level `rope_theta`).
#[derive(Debug, Clone, PartialEq)]
pub struct RopeParameters {
    /// The base wavelength.
    pub rope_theta: f64,
    /// The variant.
    pub scaling: RopeScaling,
}

impl RopeParameters {
    /// Reads the RoPE fields of a config JSON object, with transformers' priorities:
    /// `rope_scaling` (legacy) or `rope_parameters` for the dict, then `rope_theta` from the dict,
    /// else the top-level `rope_theta`, else 10000. `max_position_embeddings` is llama3's fallback
    /// for `original_max_position_embeddings`.
    pub fn from_config_json(
        root: &Map<String, Value>,
        max_position_embeddings: usize,
    ) -> Result<Self, ConfigError> {
        Self::from_config_json_with_default_theta(root, max_position_embeddings, DEFAULT_THETA)
    }

    /// [`Self::from_config_json`] for a family whose config class sets its own `default_theta`
    /// (Mixtral's is 1e6), used when the config names no `rope_theta`.
    pub fn from_config_json_with_default_theta(
        root: &Map<String, Value>,
        max_position_embeddings: usize,
        default_theta: f64,
    ) -> Result<Self, ConfigError> {
        let empty = Map::new();
        let dict = match (root.get("rope_scaling"), root.get("rope_parameters")) {
            (Some(Value::Object(d)), _) => d,
            (_, Some(Value::Object(d))) => d,
            (_, Some(Value::Null) | None) => &empty,
            (_, Some(other)) => {
                return Err(ConfigError::Invalid(format!(
                    "rope_parameters must be an object, got {other}"
                )))
            }
        };
        if dict.values().any(Value::is_object) {
            return Err(ConfigError::Unsupported(
                "per-layer-type (nested) rope_parameters".into(),
            ));
        }
        let number = |key: &str| -> Result<Option<f64>, ConfigError> {
            match dict.get(key).or_else(|| root.get(key)) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "rope parameter `{key}` must be a number, got {v}"
                    ))
                }),
            }
        };
        let required = |key: &str, rope_type: &str| -> Result<f64, ConfigError> {
            number(key)?.ok_or_else(|| {
                ConfigError::Invalid(format!("rope_type `{rope_type}` needs `{key}`"))
            })
        };
        let rope_theta = number("rope_theta")?.unwrap_or(default_theta);
        if let Some(factor) = number("partial_rotary_factor")? {
            if factor != 1.0 {
                return Err(ConfigError::Unsupported(format!(
                    "partial_rotary_factor {factor} (only 1.0)"
                )));
            }
        }
        let rope_type = dict
            .get("rope_type")
            .or_else(|| dict.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let scaling = match rope_type {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: required("factor", rope_type)? },
            "llama3" => RopeScaling::Llama3 {
                factor: required("factor", rope_type)?,
                low_freq_factor: required("low_freq_factor", rope_type)?,
                high_freq_factor: required("high_freq_factor", rope_type)?,
                original_max_position_embeddings: number("original_max_position_embeddings")?
                    .unwrap_or(max_position_embeddings as f64),
            },
            "yarn" => {
                let original = required("original_max_position_embeddings", rope_type)?;
                // transformers: a missing factor is the extension ratio (DeepSeek-V3's configs).
                let factor = match number("factor")? {
                    Some(factor) => factor,
                    None => max_position_embeddings as f64 / original,
                };
                let mscale = |scale: f64, m: f64| {
                    if scale <= 1.0 {
                        1.0
                    } else {
                        0.1 * m * scale.ln() + 1.0
                    }
                };
                let attention_factor = match (
                    number("attention_factor")?,
                    number("mscale")?,
                    number("mscale_all_dim")?,
                ) {
                    (Some(given), _, _) => given,
                    (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                        mscale(factor, m) / mscale(factor, all)
                    }
                    _ => mscale(factor, 1.0),
                };
                // transformers reads them with `or`: 0 (or null) means the default.
                let or_default = |value: Option<f64>, default: f64| match value {
                    Some(v) if v != 0.0 => v,
                    _ => default,
                };
                let truncate = match dict.get("truncate") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => {
                        return Err(ConfigError::Invalid(format!(
                            "rope parameter `truncate` must be a boolean, got {other}"
                        )))
                    }
                };
                RopeScaling::Yarn {
                    factor,
                    original_max_position_embeddings: original,
                    beta_fast: or_default(number("beta_fast")?, 32.0),
                    beta_slow: or_default(number("beta_slow")?, 1.0),
                    attention_factor,
                    truncate,
                }
            }
            other => {
                return Err(ConfigError::Unsupported(format!(
                    "rope_type `{other}` (supported: default, linear, llama3, yarn)"
                )))
            }
        };
        let params = Self { rope_theta, scaling };
        params.validate()?;
        Ok(params)
    }

    /// Checks the values give finite frequencies: `rope_theta` and every factor finite and
    /// positive, and llama3's `high_freq_factor` above its `low_freq_factor`.
    /// [`from_config_json`](Self::from_config_json) calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use super::limits::float;
        float("rope_theta", self.rope_theta, true)?;
        match self.scaling {
            RopeScaling::Default => {}
            RopeScaling::Linear { factor } => float("rope_parameters.factor", factor, true)?,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                float("rope_parameters.factor", factor, true)?;
                float("rope_parameters.low_freq_factor", low_freq_factor, true)?;
                float("rope_parameters.high_freq_factor", high_freq_factor, true)?;
                float(
                    "rope_parameters.original_max_position_embeddings",
                    original_max_position_embeddings,
                    true,
                )?;
                if high_freq_factor <= low_freq_factor {
                    return Err(ConfigError::Field {
                        field: "rope_parameters.high_freq_factor".into(),
                        value: high_freq_factor.to_string(),
                        reason: format!("must be greater than low_freq_factor ({low_freq_factor})"),
                    });
                }
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                truncate: _,
            } => {
                float("rope_parameters.factor", factor, true)?;
                float(
                    "rope_parameters.original_max_position_embeddings",
                    original_max_position_embeddings,
                    true,
                )?;
                float("rope_parameters.beta_fast", beta_fast, true)?;
                float("rope_parameters.beta_slow", beta_slow, true)?;
                float("rope_parameters.attention_factor", attention_factor, true)?;
            }
        }
        Ok(())
    }

    /// The scale transformers applies to cos and sin (`attention_scaling`): YaRN's attention
    /// factor, 1 otherwise.
    pub fn attention_scaling(&self) -> f64 {
        match self.scaling {
            RopeScaling::Yarn { attention_factor, .. } => attention_factor,
            _ => 1.0,
        }
    }

    /// The inverse frequencies for a head dimension `dim`, computed in f32 step by step as
    /// transformers does (`1 / theta ** (arange(0, dim, 2) / dim)`, then the variant's scaling).
    pub fn inv_freq(&self, dim: usize) -> Vec<f32> {
        let base = self.rope_theta as f32;
        let default: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
            .collect();
        match self.scaling {
            RopeScaling::Default => default,
            RopeScaling::Linear { factor } => default.iter().map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let factor = factor as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                default
                    .iter()
                    .map(|&inv| {
                        let wavelen = (2.0 * std::f64::consts::PI) as f32 / inv;
                        let scaled = if f64::from(wavelen) > low_wavelen {
                            inv / factor
                        } else {
                            inv
                        };
                        let smooth = ((old as f32) / wavelen - low_freq_factor as f32)
                            / (high_freq_factor as f32 - low_freq_factor as f32);
                        // transformers' `~(wavelen < high) * ~(wavelen > low)` (no NaN here).
                        let wavelen64 = f64::from(wavelen);
                        let medium = wavelen64 >= high_wavelen && wavelen64 <= low_wavelen;
                        if medium {
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: old,
                beta_fast,
                beta_slow,
                truncate,
                ..
            } => yarn_inv_freq(
                &default,
                dim,
                self.rope_theta,
                factor,
                old,
                (beta_fast, beta_slow),
                truncate,
            ),
        }
    }
}

/// YaRN's inverse frequencies, as transformers' `_compute_yarn_parameters` computes them in f32:
/// each dimension between the interpolated (`/ factor`) and the extrapolated (original)
/// frequency, by a linear ramp over the correction range of `(beta_fast, beta_slow)` rotations.
fn yarn_inv_freq(
    extrapolation: &[f32],
    dim: usize,
    base: f64,
    factor: f64,
    original_max_position_embeddings: f64,
    (beta_fast, beta_slow): (f64, f64),
    truncate: bool,
) -> Vec<f32> {
    let dim_f = dim as f64;
    let correction_dim = |rotations: f64| {
        dim_f * (original_max_position_embeddings / (rotations * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
    if truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, mut high) = (low.max(0.0), high.min(dim_f - 1.0));
    if low == high {
        high += 0.001; // transformers' guard against a zero-width ramp
    }
    let (low32, width32) = (low as f32, (high - low) as f32);
    let base32 = base as f32;
    extrapolation
        .iter()
        .enumerate()
        .map(|(j, &extrapolated)| {
            let pos_freq = base32.powf((2 * j) as f32 / dim as f32);
            let interpolated = 1.0 / (factor as f32 * pos_freq);
            let ramp = ((j as f32 - low32) / width32).clamp(0.0, 1.0);
            let extrapolation_factor = 1.0 - ramp;
            interpolated * (1.0 - extrapolation_factor) + extrapolated * extrapolation_factor
        })
        .collect()
}

/// The `(cos, sin)` pair every attention layer receives, each `[rows, seq_len, head_dim]`
/// (transformers' `position_embeddings`): one row shared by the batch, or one per sequence of a
/// padded batch.
#[derive(Debug, Clone)]
pub struct PositionEmbeddings<B: Backend> {
    /// `cos(cat(freqs, freqs))`.
    pub cos: Tensor<B, 3>,
    /// `sin(cat(freqs, freqs))`.
    pub sin: Tensor<B, 3>,
}

/// transformers' `XxxRotaryEmbedding`: holds the inverse frequencies and produces the
/// [`PositionEmbeddings`] for positions `0..seq_len`.
///
/// Kept on the host: the table is tiny, and computing it in f32 on the CPU reproduces
/// transformers' values on every backend.
#[derive(Debug, Clone, PartialEq)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
    /// cos and sin are multiplied by it (YaRN's attention factor; 1 otherwise).
    attention_scaling: f32,
}

impl RotaryEmbedding {
    /// Inverse frequencies for `head_dim` from `params`.
    pub fn new(params: &RopeParameters, head_dim: usize) -> Self {
        Self {
            inv_freq: params.inv_freq(head_dim),
            attention_scaling: params.attention_scaling() as f32,
        }
    }

    /// The inverse frequencies (`head_dim / 2` values).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// `cos`/`sin` for positions `0..seq_len`, in the backend's default float dtype.
    pub fn forward<B: Backend>(&self, seq_len: usize, device: &B::Device) -> PositionEmbeddings<B> {
        let positions: Vec<usize> = (0..seq_len).collect();
        self.at_positions(&positions, 1, device)
    }

    /// `cos`/`sin` for the new tokens of `layout`, `[rows, seq, head_dim]` (one row shared by
    /// the batch, or one per padded sequence).
    pub fn forward_layout<B: Backend>(
        &self,
        layout: &AttentionLayout,
        device: &B::Device,
    ) -> PositionEmbeddings<B> {
        self.at_positions(layout.positions(), layout.position_rows(), device)
    }

    /// The tables of `positions`, `rows` rows of equal length.
    fn at_positions<B: Backend>(
        &self,
        positions: &[usize],
        rows: usize,
        device: &B::Device,
    ) -> PositionEmbeddings<B> {
        let half = self.inv_freq.len();
        let dim = 2 * half;
        let mut cos = Vec::with_capacity(positions.len() * dim);
        let mut sin = Vec::with_capacity(positions.len() * dim);
        for &pos in positions {
            // `position_ids.float() * inv_freq`, then `cat((freqs, freqs), -1)`.
            let freqs: Vec<f32> = self.inv_freq.iter().map(|f| pos as f32 * f).collect();
            let scale = self.attention_scaling;
            for _ in 0..2 {
                cos.extend(freqs.iter().map(|f| f.cos() * scale));
                sin.extend(freqs.iter().map(|f| f.sin() * scale));
            }
        }
        let shape = [rows, positions.len() / rows.max(1), dim];
        PositionEmbeddings {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }
}

/// `cat(-x2, x1)` over the last dimension, `x1`/`x2` its two halves.
pub fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let dim = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, dim / 2);
    let x2 = x.narrow(3, dim / 2, dim - dim / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

/// Applies RoPE to queries and keys `[batch, heads, seq, head_dim]` (transformers'
/// `apply_rotary_pos_emb` with `unsqueeze_dim=1`).
pub fn apply_rotary_pos_emb<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    position_embeddings: &PositionEmbeddings<B>,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let cos: Tensor<B, 4> = position_embeddings.cos.clone().unsqueeze_dim(1);
    let sin: Tensor<B, 4> = position_embeddings.sin.clone().unsqueeze_dim(1);
    let q_embed = q.clone() * cos.clone() + rotate_half(q) * sin.clone();
    let k_embed = k.clone() * cos + rotate_half(k) * sin;
    (q_embed, k_embed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RopeParameters, ConfigError> {
        let value: Value = serde_json::from_str(json).unwrap();
        RopeParameters::from_config_json(value.as_object().unwrap(), 2048)
    }

    #[test]
    fn reads_standard_and_legacy_forms() {
        let p = parse(r#"{"rope_parameters": {"rope_type": "default", "rope_theta": 1000.0}}"#);
        assert_eq!(p.unwrap().rope_theta, 1000.0);
        let p = parse(r#"{"rope_theta": 500.0}"#).unwrap();
        assert_eq!((p.rope_theta, p.scaling), (500.0, RopeScaling::Default));
        let p = parse(r#"{"rope_theta": 5.0, "rope_scaling": {"type": "linear", "factor": 2}}"#);
        assert_eq!(
            p.unwrap(),
            RopeParameters {
                rope_theta: 5.0,
                scaling: RopeScaling::Linear { factor: 2.0 }
            }
        );
        assert_eq!(parse("{}").unwrap().rope_theta, DEFAULT_THETA);
    }

    #[test]
    fn rejects_what_it_does_not_implement() {
        let err = parse(r#"{"rope_parameters": {"rope_type": "dynamic", "factor": 4}}"#);
        assert!(matches!(err, Err(ConfigError::Unsupported(m)) if m.contains("dynamic")));
        let err = parse(r#"{"rope_parameters": {"rope_type": "yarn", "factor": 4}}"#);
        assert!(
            matches!(err, Err(ConfigError::Invalid(ref m)) if m.contains("original_max_position_embeddings")),
            "{err:?}"
        );
        let err = parse(r#"{"rope_parameters": {"rope_type": "linear"}}"#);
        assert!(matches!(err, Err(ConfigError::Invalid(m)) if m.contains("factor")));
    }

    #[test]
    fn default_inv_freq() {
        let p = parse(r#"{"rope_theta": 10000.0}"#).unwrap();
        let inv = p.inv_freq(8);
        assert_eq!(inv.len(), 4);
        assert_eq!(inv[0], 1.0);
        assert!((inv[1] - 0.1).abs() < 1e-7);
    }
}
