//! Weight transforms: [`WeightRenaming`] (rename keys) and [`WeightConverter`] (collect the
//! tensors of several keys and run ops on them), and [`WeightTransform`], either of them.
//!
//! Patterns follow transformers' semantics (see [`crate::pattern`]): searched anywhere in the key,
//! the matched part replaced by the first target pattern, `\1` for the source's first group.

mod error;
mod shared;
mod special;

#[cfg(test)]
mod reverse_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use crate::ops::ConversionOp;
use crate::pattern::IntoPatterns;

pub use self::error::TransformError;
use self::shared::TransformCore;
pub use self::special::{GroupWeightRename, PrefixChange};

/// Accessors shared by [`WeightRenaming`] and [`WeightConverter`].
macro_rules! common_methods {
    () => {
        /// Restricts the transform to keys under `scope_prefix` (a sub-model such as
        /// `vision_model`): a key must start with `base_model_prefix.scope_prefix.` or
        /// `scope_prefix.`; that prefix is stripped before matching and put back after.
        /// An empty scope matches every key but still strips the base model prefix.
        pub fn with_scope_prefix(mut self, scope_prefix: impl Into<String>) -> Self {
            self.core.scope_prefix = Some(scope_prefix.into());
            self
        }

        /// The model's base model prefix (e.g. `model`), used by a scoped transform. If unset, the
        /// [`ConversionPlan`](crate::plan::ConversionPlan) uses its own option.
        pub fn with_base_model_prefix(mut self, base_model_prefix: impl Into<String>) -> Self {
            self.core.base_model_prefix = Some(base_model_prefix.into());
            self
        }

        /// Source patterns after preprocessing (`\1` filled in, `^`/`$` taken from the paired
        /// target), in declared order. Ops receive their inputs keyed by these.
        pub fn source_patterns(&self) -> &[String] {
            &self.core.sources
        }

        /// Target patterns after preprocessing (plain replacement text), in declared order.
        pub fn target_patterns(&self) -> &[String] {
            &self.core.targets
        }

        /// Source patterns as given.
        pub fn original_source_patterns(&self) -> &[String] {
            &self.core.original_sources
        }

        /// Target patterns as given.
        pub fn original_target_patterns(&self) -> &[String] {
            &self.core.original_targets
        }

        /// The scope, if any (see `with_scope_prefix`).
        pub fn scope_prefix(&self) -> Option<&str> {
            self.core.scope_prefix.as_deref()
        }

        /// The base model prefix used by the scope, if set.
        pub fn base_model_prefix(&self) -> Option<&str> {
            self.core.base_model_prefix.as_deref()
        }

        /// Renames `key` if a source pattern matches it: the matched part becomes the first target
        /// pattern. Returns the new key and the (preprocessed) source pattern that matched.
        pub fn rename_source_key(&self, key: &str) -> Option<(String, &str)> {
            self.core
                .rename(key, None)
                .map(|(renamed, i)| (renamed, self.core.sources[i].as_str()))
        }
    };
}

/// Renames checkpoint keys; the tensor is unchanged.
///
/// ```
/// use patcher_core::WeightRenaming;
///
/// let renaming = WeightRenaming::new(".block_sparse_moe.", ".mlp.").unwrap();
/// let (renamed, _) = renaming
///     .rename_source_key("model.layers.0.block_sparse_moe.gate.weight")
///     .unwrap();
/// assert_eq!(renamed, "model.layers.0.mlp.gate.weight");
///
/// // `(...)` in the source and `\1` in the target:
/// let renaming = WeightRenaming::new(r"^vit\.layers\.(\d+)\.ln1", r"vit.layers.\1.norm1").unwrap();
/// let (renamed, _) = renaming.rename_source_key("vit.layers.7.ln1.weight").unwrap();
/// assert_eq!(renamed, "vit.layers.7.norm1.weight");
/// ```
#[derive(Debug, Clone)]
pub struct WeightRenaming {
    core: TransformCore,
}

impl WeightRenaming {
    /// A renaming from `sources` to `targets` (a `&str`, an array, a `Vec`...). Every source is
    /// replaced by the first target.
    pub fn new(
        sources: impl IntoPatterns,
        targets: impl IntoPatterns,
    ) -> Result<Self, TransformError> {
        Ok(Self {
            core: TransformCore::new(
                "WeightRenaming",
                sources.into_patterns(),
                targets.into_patterns(),
            )?,
        })
    }

    common_methods!();

    /// The renaming the other way round (for saving), scope kept.
    ///
    /// The reverse writes back the text each source pattern matched, so a source must match
    /// one text outside its first `(...)` group: literals, `\.`, `.` (written back as a dot),
    /// `^`, `$`, `\b` and `\B` reverse; a character class, a repetition (`*.` included), an
    /// alternation, flags or a second group outside the first group do not
    /// ([`TransformError::IrreversibleRenaming`], naming the pattern and the part).
    ///
    /// ```
    /// use patcher_core::WeightRenaming;
    ///
    /// let lora = WeightRenaming::new(r"\b(q_proj|v_proj)\.weight$", r"\1.base_layer.weight").unwrap();
    /// let back = lora.reverse().unwrap();
    /// let key = "model.layers.0.self_attn.v_proj.base_layer.weight";
    /// assert_eq!(back.rename_source_key(key).unwrap().0, "model.layers.0.self_attn.v_proj.weight");
    ///
    /// // `\d+` may have matched `1` or `01`: nothing says which to write back.
    /// let numbered = WeightRenaming::new(r"layers\.\d+\.ln", "layers.norm").unwrap();
    /// assert!(numbered.reverse().is_err());
    /// ```
    pub fn reverse(&self) -> Result<Self, TransformError> {
        Ok(Self {
            core: self
                .core
                .reversed("WeightRenaming", Some(self.to_string().as_str()))?,
        })
    }
}

/// Collects the tensors whose keys match its source patterns into one group per target key and
/// runs ops on them (concatenate, chunk, stack experts, ...).
///
/// Every matching key is renamed to the same target key (the matched part replaced by the first
/// target pattern), which is how many keys end up in one group; within a group, tensors are kept
/// per source pattern in natural key order.
///
/// Built like transformers' `WeightConverter(sources, targets, operations=[..])`: [`new`](Self::new)
/// then one [`op`](Self::op) per operation. Neither returns a `Result`: a converter that is not
/// valid (a bad pattern, no op, several sources and several targets) keeps its error, matches no
/// key, and is reported by [`validate`](Self::validate), which the `Patcher` and every load and
/// save call before using it. [`try_new`](Self::try_new) checks at once.
///
/// ```
/// use patcher_core::ops::{Concatenate, MergeModulelist};
/// use patcher_core::WeightConverter;
///
/// let converter = WeightConverter::new(
///     ["mlp.experts.*.gate_proj.weight", "mlp.experts.*.up_proj.weight"],
///     "mlp.experts.gate_up_proj",
/// )
/// .op(MergeModulelist::new(0))
/// .op(Concatenate::new(1));
/// assert!(converter.validate().is_ok());
/// let (renamed, pattern) = converter
///     .rename_source_key("model.layers.0.mlp.experts.12.up_proj.weight")
///     .unwrap();
/// assert_eq!(renamed, "model.layers.0.mlp.experts.gate_up_proj");
/// assert_eq!(pattern, "mlp.experts.*.up_proj.weight");
///
/// // Saving runs the reverse: SplitModulelist after Chunk.
/// let reverse = converter.reverse().unwrap();
/// assert_eq!(reverse.source_patterns(), ["mlp.experts.gate_up_proj"]);
///
/// // A converter without ops is kept, and reported.
/// assert!(WeightConverter::new("a", "b").validate().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct WeightConverter {
    core: TransformCore,
    ops: Vec<Arc<dyn ConversionOp>>,
    /// Why the patterns did not compile (the core then matches nothing).
    invalid: Option<TransformError>,
}

impl WeightConverter {
    /// A converter from `sources` to `targets` (a `&str`, an array, a `Vec`...), without ops yet:
    /// add them in the order they run with [`op`](Self::op).
    pub fn new(sources: impl IntoPatterns, targets: impl IntoPatterns) -> Self {
        let sources = sources.into_patterns();
        let targets = targets.into_patterns();
        match TransformCore::new("WeightConverter", sources.clone(), targets.clone()) {
            Ok(core) => Self { core, ops: Vec::new(), invalid: None },
            Err(error) => Self {
                core: TransformCore::unmatchable(sources, targets),
                ops: Vec::new(),
                invalid: Some(error),
            },
        }
    }

    /// This converter with `op` run after the ops before it.
    pub fn op(mut self, op: impl ConversionOp + 'static) -> Self {
        self.ops.push(Arc::new(op));
        self
    }

    /// This converter with an already shared op run after the ops before it.
    pub fn op_shared(mut self, op: Arc<dyn ConversionOp>) -> Self {
        self.ops.push(op);
        self
    }

    /// A converter from `sources` to `targets` running `ops` in order, checked at once (see
    /// [`validate`](Self::validate)).
    pub fn try_new(
        sources: impl IntoPatterns,
        targets: impl IntoPatterns,
        ops: Vec<Arc<dyn ConversionOp>>,
    ) -> Result<Self, TransformError> {
        let converter = ops
            .into_iter()
            .fold(Self::new(sources, targets), Self::op_shared);
        converter.validate()?;
        Ok(converter)
    }

    /// Whether the converter can run: its patterns compiled, it has ops, and it is not
    /// many-to-many unless an op [`supports_many_to_many`](ConversionOp::supports_many_to_many).
    pub fn validate(&self) -> Result<(), TransformError> {
        if let Some(error) = &self.invalid {
            return Err(error.clone());
        }
        let sources = || self.core.original_sources.clone();
        let targets = || self.core.original_targets.clone();
        if self.ops.is_empty() {
            return Err(TransformError::NoOperations { sources: sources(), targets: targets() });
        }
        if self.core.sources.len() > 1
            && self.core.targets.len() > 1
            && !self.ops.iter().any(|op| op.supports_many_to_many())
        {
            return Err(TransformError::ManyToMany { sources: sources(), targets: targets() });
        }
        Ok(())
    }

    common_methods!();

    /// The ops, in the order they run.
    pub fn ops(&self) -> &[Arc<dyn ConversionOp>] {
        &self.ops
    }

    /// This converter with the ops a load plan pinned (`None` keeps the op as declared).
    pub(crate) fn with_pinned_ops(&self, pinned: Vec<Option<Arc<dyn ConversionOp>>>) -> Self {
        let ops = self
            .ops
            .iter()
            .zip(pinned.into_iter().chain(std::iter::repeat(None)))
            .map(|(op, pin)| pin.unwrap_or_else(|| op.clone()))
            .collect();
        Self { core: self.core.clone(), ops, invalid: self.invalid.clone() }
    }

    /// The converter the other way round (for saving): patterns swapped, each op replaced by its
    /// reverse, in reverse order. Errors, naming the op, if an op has no reverse.
    pub fn reverse(&self) -> Result<Self, TransformError> {
        self.validate()?;
        let ops = self
            .ops
            .iter()
            .rev()
            .map(|op| {
                op.reverse().ok_or_else(|| TransformError::NotReversible {
                    transform: self.to_string(),
                    op: op.name(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            core: self.core.reversed("WeightConverter", None)?,
            ops,
            invalid: None,
        })
    }
}

/// A renaming or a converter: what a model's list of weight conversions holds.
#[derive(Debug, Clone)]
pub enum WeightTransform {
    /// Renames keys.
    Renaming(WeightRenaming),
    /// Groups keys and runs ops.
    Converter(WeightConverter),
    /// Adds or removes a name part after the model prefix.
    PrefixChange(PrefixChange),
    /// Paired renamings switched on by a guard.
    GroupRename(GroupWeightRename),
}

impl From<WeightRenaming> for WeightTransform {
    fn from(renaming: WeightRenaming) -> Self {
        Self::Renaming(renaming)
    }
}

impl From<WeightConverter> for WeightTransform {
    fn from(converter: WeightConverter) -> Self {
        Self::Converter(converter)
    }
}

impl From<PrefixChange> for WeightTransform {
    fn from(change: PrefixChange) -> Self {
        Self::PrefixChange(change)
    }
}

impl From<GroupWeightRename> for WeightTransform {
    fn from(group: GroupWeightRename) -> Self {
        Self::GroupRename(group)
    }
}

impl WeightTransform {
    /// Whether this is a [`WeightConverter`].
    pub fn is_converter(&self) -> bool {
        matches!(self, Self::Converter(_))
    }

    /// The converter, if this is one.
    pub fn as_converter(&self) -> Option<&WeightConverter> {
        match self {
            Self::Converter(c) => Some(c),
            _ => None,
        }
    }

    /// The group rename, if this is one.
    pub fn as_group_rename(&self) -> Option<&GroupWeightRename> {
        match self {
            Self::GroupRename(g) => Some(g),
            _ => None,
        }
    }

    /// The ops (empty for a renaming).
    pub fn ops(&self) -> &[Arc<dyn ConversionOp>] {
        match self {
            Self::Converter(c) => c.ops(),
            _ => &[],
        }
    }

    /// Preprocessed source patterns (see [`WeightConverter::source_patterns`]; a
    /// [`PrefixChange`] gives transformers' regex).
    pub fn source_patterns(&self) -> &[String] {
        match self {
            Self::Renaming(r) => &r.core.sources,
            Self::Converter(c) => &c.core.sources,
            Self::PrefixChange(p) => std::slice::from_ref(p.source_pattern()),
            Self::GroupRename(g) => g.source_patterns(),
        }
    }

    /// Preprocessed target patterns.
    pub fn target_patterns(&self) -> &[String] {
        match self {
            Self::Renaming(r) => &r.core.targets,
            Self::Converter(c) => &c.core.targets,
            Self::PrefixChange(p) => std::slice::from_ref(p.target_pattern()),
            Self::GroupRename(g) => g.target_patterns(),
        }
    }

    /// Source patterns as given.
    pub fn original_source_patterns(&self) -> &[String] {
        match self {
            Self::Renaming(r) => &r.core.original_sources,
            Self::Converter(c) => &c.core.original_sources,
            _ => self.source_patterns(),
        }
    }

    /// Target patterns as given.
    pub fn original_target_patterns(&self) -> &[String] {
        match self {
            Self::Renaming(r) => &r.core.original_targets,
            Self::Converter(c) => &c.core.original_targets,
            _ => self.target_patterns(),
        }
    }

    /// The scope, if any.
    pub fn scope_prefix(&self) -> Option<&str> {
        match self {
            Self::Renaming(r) => r.core.scope_prefix.as_deref(),
            Self::Converter(c) => c.core.scope_prefix.as_deref(),
            _ => None,
        }
    }

    /// Renames `key` (see [`WeightRenaming::rename_source_key`]). Returns the new key and the
    /// source pattern that matched.
    pub fn rename_source_key(&self, key: &str) -> Option<(String, &str)> {
        let (renamed, i) = self.rename_with(key, None)?;
        Some((renamed, self.source_patterns()[i].as_str()))
    }

    /// Whether the transform can run (see [`WeightConverter::validate`]; the other kinds are
    /// checked when built).
    pub fn validate(&self) -> Result<(), TransformError> {
        match self {
            Self::Converter(c) => c.validate(),
            _ => Ok(()),
        }
    }

    /// The transform the other way round (see [`WeightConverter::reverse`]).
    pub fn reverse(&self) -> Result<Self, TransformError> {
        Ok(match self {
            Self::Renaming(r) => Self::Renaming(r.reverse()?),
            Self::Converter(c) => Self::Converter(c.reverse()?),
            Self::PrefixChange(p) => Self::PrefixChange(p.reverse()),
            Self::GroupRename(g) => Self::GroupRename(g.reverse()?),
        })
    }

    /// Renames with `default_base` standing in for an unset base model prefix; returns the
    /// declared index of the matching source.
    pub(crate) fn rename_with(
        &self,
        key: &str,
        default_base: Option<&str>,
    ) -> Option<(String, usize)> {
        match self {
            Self::Renaming(r) => r.core.rename(key, default_base),
            Self::Converter(c) => c.core.rename(key, default_base),
            Self::PrefixChange(p) => p.rename(key).map(|k| (k, 0)),
            Self::GroupRename(g) => g.rename_with(key, default_base),
        }
    }

    /// Whether a source pattern matches `key` (within the scope).
    pub(crate) fn matches_with(&self, key: &str, default_base: Option<&str>) -> bool {
        match self {
            Self::Renaming(r) => r.core.matches(key, default_base),
            Self::Converter(c) => c.core.matches(key, default_base),
            Self::PrefixChange(p) => p.rename(key).is_some(),
            Self::GroupRename(g) => g.matches_with(key, default_base),
        }
    }
}

fn fmt_patterns(f: &mut fmt::Formatter<'_>, patterns: &[String]) -> fmt::Result {
    match patterns {
        [one] => write!(f, "{one:?}"),
        many => write!(f, "{many:?}"),
    }
}

fn fmt_transform(
    f: &mut fmt::Formatter<'_>,
    kind: &str,
    core: &TransformCore,
    ops: &[Arc<dyn ConversionOp>],
) -> fmt::Result {
    write!(f, "{kind}(")?;
    fmt_patterns(f, &core.original_sources)?;
    f.write_str(" -> ")?;
    fmt_patterns(f, &core.original_targets)?;
    if !ops.is_empty() {
        let names: Vec<String> = ops.iter().map(|op| op.name()).collect();
        write!(f, "; {}", names.join(", "))?;
    }
    if let Some(scope) = &core.scope_prefix {
        write!(f, "; scope {scope:?}")?;
    }
    f.write_str(")")
}

impl fmt::Display for WeightRenaming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_transform(f, "WeightRenaming", &self.core, &[])
    }
}

impl fmt::Display for WeightConverter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_transform(f, "WeightConverter", &self.core, &self.ops)
    }
}

impl fmt::Display for WeightTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Renaming(r) => r.fmt(f),
            Self::Converter(c) => c.fmt(f),
            Self::PrefixChange(p) => p.fmt(f),
            Self::GroupRename(g) => g.fmt(f),
        }
    }
}
