//! What a plan takes besides the transforms, the checkpoint and the model: the base model prefix,
//! the conversions it may run backwards, the keys to ignore and the model's float dtype.

use std::collections::HashSet;

use regex::Regex;

use super::shard::TensorParallel;
use crate::pattern::PatternError;
use crate::tensor::DType;
use crate::transform::WeightTransform;

/// Options of a plan.
///
/// ```
/// use patcher_core::plan::PlanOptions;
/// use patcher_core::DType;
///
/// let options = PlanOptions::default()
///     .base_model_prefix("model")
///     .float_dtype(DType::F32)
///     .ignore_unexpected([r"rotary_emb\.inv_freq$", r"\.position_ids$"])
///     .unwrap();
/// assert!(options.is_ignored("model.layers.0.self_attn.rotary_emb.inv_freq"));
/// assert!(!options.is_ignored("model.layers.0.self_attn.q_proj.weight"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PlanOptions {
    /// The model's base model prefix (transformers' `base_model_prefix`, e.g. `model`): a key is
    /// stripped of it, or gets it, when that makes it a model key, so a `ForCausalLM` model loads
    /// a base-model checkpoint and the reverse. Scoped transforms without their own base model
    /// prefix use this one.
    pub base_model_prefix: Option<String>,
    /// Converters the plan may run backwards, when the checkpoint holds a converter's targets
    /// and the model wants its sources (a checkpoint saved in transformers 5's fused expert
    /// layout loaded into a model with one linear per expert). Usually the model's default
    /// conversions, before a patcher filters them. See [`ConversionPlan::new`](super::ConversionPlan::new).
    pub reversible: Vec<WeightTransform>,
    /// Patterns (regexes, searched anywhere in the key) of checkpoint keys that may be present
    /// without being parameters (transformers' `_keys_to_ignore_on_load_unexpected`). They are
    /// reported as ignored, never as unexpected.
    pub ignore_unexpected: Vec<Regex>,
    /// Patterns (regexes, searched anywhere in the parameter's checkpoint name) of parameters
    /// that checkpoints need not hold (transformers' `_keys_to_ignore_on_load_missing`: adapters
    /// such as LoRA's, buffers computed at build time). Nothing loaded into them is reported as
    /// [`missing_ignored`](super::LoadReport::missing_ignored), never as missing.
    pub ignore_missing: Vec<Regex>,
    /// The model's float dtype: float checkpoint tensors are cast to it before the ops run (the
    /// loader does so), so converter sources of mixed float dtypes plan like the cast tensors.
    pub float_dtype: Option<DType>,
    /// Save direction: the keys of the checkpoint the model was loaded from, if known. A reversed
    /// renaming is skipped for a key that is already in checkpoint form (transformers #46650),
    /// unless that guard gives a key the checkpoint did not have and the unguarded renaming gives
    /// one it had (a renaming whose pattern also matches its own output).
    pub source_keys: HashSet<String>,
    /// No model: every key the transforms give (or leave as it is) is a target, with the dtype
    /// and shape its ops give it. What a list of conversions does to a checkpoint on its own
    /// (the command line's `--conversions`); see [`PlanOptions::without_model`].
    pub without_model: bool,
    /// Load direction: this peer's tensor-parallel plan. Split parameters are planned at their
    /// full shape (the model's local shape times the peers) and each written target carries the
    /// [`ShardSlice`](super::ShardSlice) this peer keeps; see [`TensorParallel`].
    pub tensor_parallel: Option<TensorParallel>,
}

impl PlanOptions {
    /// Plans with no model: the parameter list given to
    /// [`ConversionPlan::new`](super::ConversionPlan::new) is ignored and every output is
    /// written, so the plan converts a checkpoint through the transforms alone.
    ///
    /// ```
    /// use patcher_core::ops::Chunk;
    /// use patcher_core::plan::PlanOptions;
    /// use patcher_core::{ConversionPlan, DType, TensorMeta, WeightConverter, WeightRenaming};
    ///
    /// let transforms = [
    ///     WeightRenaming::new(r"^h\.", "transformer.h.").unwrap().into(),
    ///     WeightConverter::new(["attn.c_attn.weight"], ["attn.q.weight", "attn.k.weight", "attn.v.weight"])
    ///         .op(Chunk::new(1))
    ///         .into(),
    /// ];
    /// let checkpoint = [
    ///     ("h.0.attn.c_attn.weight", TensorMeta::new(DType::F32, [8, 24])),
    ///     ("wte.weight", TensorMeta::new(DType::F32, [50, 8])),
    /// ];
    /// let no_params: [(&str, TensorMeta); 0] = [];
    /// let options = PlanOptions::default().without_model();
    /// let plan = ConversionPlan::new(&transforms, &checkpoint, &no_params, &options);
    /// assert!(plan.is_clean(), "{}", plan.report());
    /// let targets: Vec<(&str, &[usize])> = plan
    ///     .groups()
    ///     .iter()
    ///     .flat_map(|g| g.targets.iter().map(|t| (t.key.as_str(), t.meta.shape.as_slice())))
    ///     .collect();
    /// assert_eq!(targets, [
    ///     ("transformer.h.0.attn.q.weight", &[8, 8][..]),
    ///     ("transformer.h.0.attn.k.weight", &[8, 8][..]),
    ///     ("transformer.h.0.attn.v.weight", &[8, 8][..]),
    ///     ("wte.weight", &[50, 8][..]),
    /// ]);
    /// ```
    pub fn without_model(mut self) -> Self {
        self.without_model = true;
        self
    }

    /// Plans for one peer of a tensor-parallel model (see [`TensorParallel`]).
    pub fn tensor_parallel(mut self, plan: TensorParallel) -> Self {
        self.tensor_parallel = Some(plan);
        self
    }

    /// Sets the base model prefix (an empty prefix means none).
    pub fn base_model_prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.base_model_prefix = (!prefix.is_empty()).then_some(prefix);
        self
    }

    /// Sets the converters the plan may run backwards (renamings and converters without a
    /// reverse among them are skipped).
    pub fn reversible(mut self, transforms: impl IntoIterator<Item = WeightTransform>) -> Self {
        self.reversible = transforms.into_iter().collect();
        self
    }

    /// Adds patterns of checkpoint keys to ignore. Errors, naming the pattern, if one is empty or
    /// not a valid regex.
    pub fn ignore_unexpected<S: AsRef<str>>(
        mut self,
        patterns: impl IntoIterator<Item = S>,
    ) -> Result<Self, PatternError> {
        for pattern in patterns {
            self.ignore_unexpected
                .push(compile_ignore(pattern.as_ref())?);
        }
        Ok(self)
    }

    /// Adds patterns of parameters checkpoints need not hold. Errors, naming the pattern, if one
    /// is empty or not a valid regex.
    pub fn ignore_missing<S: AsRef<str>>(
        mut self,
        patterns: impl IntoIterator<Item = S>,
    ) -> Result<Self, PatternError> {
        for pattern in patterns {
            self.ignore_missing.push(compile_ignore(pattern.as_ref())?);
        }
        Ok(self)
    }

    /// Whether parameter `name` matches an ignore-missing pattern.
    pub fn is_ignored_missing(&self, name: &str) -> bool {
        self.ignore_missing.iter().any(|re| re.is_match(name))
    }

    /// Sets the model's float dtype.
    pub fn float_dtype(mut self, dtype: DType) -> Self {
        self.float_dtype = Some(dtype);
        self
    }

    /// Sets the keys of the checkpoint the model was loaded from (save direction).
    pub fn source_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.source_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `key` matches an ignore pattern.
    pub fn is_ignored(&self, key: &str) -> bool {
        self.ignore_unexpected.iter().any(|re| re.is_match(key))
    }
}

/// Compiles one ignore pattern.
fn compile_ignore(pattern: &str) -> Result<Regex, PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty {
            what: "an ignore-unexpected pattern (it would ignore every key)".into(),
        });
    }
    Regex::new(pattern).map_err(|e| PatternError::InvalidRegex {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })
}
