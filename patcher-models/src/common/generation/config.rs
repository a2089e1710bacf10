//! `GenerationConfig`: how `generate` picks tokens and when it stops, read from a checkpoint's
//! `generation_config.json` with transformers' defaults and precedence (the class defaults, then
//! the file, then what the caller sets).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{read_config_file, ConfigError};

/// transformers' `GenerationConfig`, the fields `generate` reads. `Default` is
/// `GenerationConfig()`: greedy, `max_length` 20, and, when sampling, temperature 1, top-k 50,
/// top-p 1.
///
/// ```
/// use patcher_models::common::GenerationConfig;
///
/// let config = GenerationConfig::from_json_str(r#"{"eos_token_id": [2, 7], "do_sample": true}"#)?
///     .with_max_new_tokens(16)
///     .with_temperature(0.7)
///     .with_seed(42);
/// assert_eq!(config.eos_token_ids, [2, 7]);
/// assert_eq!((config.top_k, config.max_new_tokens), (Some(50), Some(16)));
/// # Ok::<(), patcher_models::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Tokens to generate at most (`None`: up to `max_length`, prompt included).
    pub max_new_tokens: Option<usize>,
    /// Prompt and generated tokens at most, when `max_new_tokens` is `None`.
    pub max_length: usize,
    /// Sample (`true`) or take the most likely token (`false`, greedy).
    pub do_sample: bool,
    /// Logits are divided by it before sampling.
    pub temperature: f32,
    /// Sample among the `k` most likely tokens (`None` or 0: all).
    pub top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities sum to `top_p`.
    pub top_p: f32,
    /// Logits of tokens already in the sequence are divided by it (multiplied where negative);
    /// 1 leaves them.
    pub repetition_penalty: f32,
    /// A sequence ends at any of these tokens.
    pub eos_token_ids: Vec<i64>,
    /// What a finished sequence is filled with while the others go on (`None`: the first EOS).
    pub pad_token_id: Option<i64>,
    /// A sequence also ends when its generated tokens end with one of these.
    pub stop_sequences: Vec<Vec<i64>>,
    /// The sampler's seed: the same seed gives the same tokens (`None`: a random one).
    pub seed: Option<u64>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: None,
            max_length: 20,
            do_sample: false,
            temperature: 1.0,
            top_k: Some(50),
            top_p: 1.0,
            repetition_penalty: 1.0,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            stop_sequences: Vec::new(),
            seed: None,
        }
    }
}

/// `generation_config.json` as written: an id or a list of ids for `eos_token_id`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    max_new_tokens: Option<usize>,
    max_length: Option<usize>,
    do_sample: Option<bool>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    repetition_penalty: Option<f32>,
    eos_token_id: Option<Value>,
    pad_token_id: Option<i64>,
}

impl GenerationConfig {
    /// Reads `generation_config.json` over transformers' defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_json_str(&read_config_file(path.as_ref())?)
    }

    /// The config of a checkpoint folder: its `generation_config.json` if it has one, else the
    /// defaults with `config.json`'s `eos_token_id` and `pad_token_id` (transformers'
    /// `GenerationConfig.from_model_config`).
    pub fn for_checkpoint(dir: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let dir = dir.as_ref();
        let generation = dir.join("generation_config.json");
        if generation.is_file() {
            return Self::from_file(generation);
        }
        let config: Value = serde_json::from_str(&read_config_file(&dir.join("config.json"))?)?;
        Ok(Self {
            eos_token_ids: eos_ids(config.get("eos_token_id"))?,
            pad_token_id: config.get("pad_token_id").and_then(Value::as_i64),
            ..Self::default()
        })
    }

    /// Parses and validates a generation config JSON string over the defaults.
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        let raw: Raw = serde_json::from_str(json)?;
        let d = Self::default();
        let config = Self {
            max_new_tokens: raw.max_new_tokens,
            max_length: raw.max_length.unwrap_or(d.max_length),
            do_sample: raw.do_sample.unwrap_or(d.do_sample),
            temperature: raw.temperature.unwrap_or(d.temperature),
            top_k: raw.top_k.or(d.top_k),
            top_p: raw.top_p.unwrap_or(d.top_p),
            repetition_penalty: raw.repetition_penalty.unwrap_or(d.repetition_penalty),
            eos_token_ids: eos_ids(raw.eos_token_id.as_ref())?,
            pad_token_id: raw.pad_token_id,
            ..d
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values `generate` relies on; the `with_*` setters leave that to `generate`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let field = |field: &str, value: String, reason: &str| ConfigError::Field {
            field: field.into(),
            value,
            reason: reason.into(),
        };
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            let t = self.temperature.to_string();
            return Err(field(
                "temperature",
                t,
                "must be positive (greedy: do_sample = false)",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(field("top_p", self.top_p.to_string(), "must be in (0, 1]"));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            let p = self.repetition_penalty.to_string();
            return Err(field("repetition_penalty", p, "must be positive (1: none)"));
        }
        if self.stop_sequences.iter().any(Vec::is_empty) {
            return Err(field(
                "stop_sequences",
                "[]".into(),
                "a stop sequence has a token",
            ));
        }
        Ok(())
    }

    /// With at most `n` new tokens.
    pub fn with_max_new_tokens(self, n: usize) -> Self {
        Self { max_new_tokens: Some(n), ..self }
    }

    /// Sampling (`true`) or greedy.
    pub fn with_sampling(self, do_sample: bool) -> Self {
        Self { do_sample, ..self }
    }

    /// Sampling at `temperature`.
    pub fn with_temperature(self, temperature: f32) -> Self {
        Self { temperature, do_sample: true, ..self }
    }

    /// Sampling among the `k` most likely tokens.
    pub fn with_top_k(self, k: usize) -> Self {
        Self { top_k: Some(k), do_sample: true, ..self }
    }

    /// Sampling among the most likely tokens of cumulative probability `p`.
    pub fn with_top_p(self, p: f32) -> Self {
        Self { top_p: p, do_sample: true, ..self }
    }

    /// With a repetition penalty.
    pub fn with_repetition_penalty(self, repetition_penalty: f32) -> Self {
        Self { repetition_penalty, ..self }
    }

    /// Ending sequences at these tokens.
    pub fn with_eos_token_ids(self, eos_token_ids: Vec<i64>) -> Self {
        Self { eos_token_ids, ..self }
    }

    /// Also ending a sequence when its generated tokens end with one of these.
    pub fn with_stop_sequences(self, stop_sequences: Vec<Vec<i64>>) -> Self {
        Self { stop_sequences, ..self }
    }

    /// Sampling with this seed.
    pub fn with_seed(self, seed: u64) -> Self {
        Self { seed: Some(seed), ..self }
    }

    /// How many tokens to generate after a prompt of `prompt_len`.
    pub fn new_tokens(&self, prompt_len: usize) -> usize {
        self.max_new_tokens
            .unwrap_or_else(|| self.max_length.saturating_sub(prompt_len))
    }
}

/// `eos_token_id` as written: absent, an id, or a list of ids.
fn eos_ids(value: Option<&Value>) -> Result<Vec<i64>, ConfigError> {
    let invalid = || ConfigError::Invalid("eos_token_id is not an id or a list of ids".into());
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids.iter().map(|v| v.as_i64().ok_or_else(invalid)).collect(),
        Some(v) => v.as_i64().map(|id| vec![id]).ok_or_else(invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_overrides_the_defaults_and_the_caller_the_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/llama");
        let config = GenerationConfig::for_checkpoint(dir).unwrap();
        assert_eq!(config.eos_token_ids, [2]);
        assert_eq!(
            (config.max_length, config.do_sample, config.top_k),
            (20, false, Some(50))
        );
        assert_eq!(config.new_tokens(7), 13);
        let config = config.with_max_new_tokens(4).with_top_p(0.9);
        assert_eq!((config.new_tokens(7), config.do_sample), (4, true));
        let listed = GenerationConfig::from_json_str(r#"{"eos_token_id": [2, 5], "top_k": 3}"#);
        let listed = listed.unwrap();
        assert_eq!((listed.eos_token_ids, listed.top_k), (vec![2, 5], Some(3)));
    }

    #[test]
    fn inconsistent_values_are_typed_errors() {
        for (json, field) in [
            (r#"{"temperature": 0}"#, "temperature"),
            (r#"{"top_p": 1.5}"#, "top_p"),
            (r#"{"repetition_penalty": -1}"#, "repetition_penalty"),
        ] {
            let err = GenerationConfig::from_json_str(json).unwrap_err();
            assert!(
                matches!(err, ConfigError::Field { field: ref f, .. } if f == field),
                "{err}"
            );
        }
        let err = GenerationConfig::from_json_str(r#"{"eos_token_id": "two"}"#).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
    }
}
