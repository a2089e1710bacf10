//! transformers' renaming subclasses: [`PrefixChange`] (add or remove a name part after the
//! model prefix) and [`GroupWeightRename`] (N paired renamings switched on by a guard).

use std::fmt;

use super::shared::TransformCore;
use super::TransformError;

/// Adds or removes a part of every key after an optional model prefix (transformers'
/// `PrefixChange`, used by its VLM tables: `model.X` <-> `model.language_model.X`).
///
/// transformers writes it as a regex with a lookahead; here it is plain prefix logic with the
/// same results: adding skips keys that already have the part, removing only touches keys that
/// have it. The reverse swaps add and remove.
///
/// ```
/// use patcher_core::PrefixChange;
///
/// let add = PrefixChange::add("language_model", "model").unwrap();
/// assert_eq!(add.rename("model.layers.0.w").as_deref(), Some("model.language_model.layers.0.w"));
/// assert_eq!(add.rename("model.language_model.layers.0.w"), None);
/// assert_eq!(add.rename("lm_head.weight"), None);
/// let remove = add.reverse();
/// assert_eq!(remove.rename("model.language_model.layers.0.w").as_deref(), Some("model.layers.0.w"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixChange {
    /// The name part added (or removed, see `adds`).
    part: String,
    adds: bool,
    /// Keys must start with `model_prefix.` (empty: every key).
    model_prefix: String,
    /// transformers' regex form, for display and for a patcher's filters.
    patterns: (String, String),
}

impl PrefixChange {
    /// transformers' constructor: exactly one of `prefix_to_add` and `prefix_to_remove`.
    pub fn new(
        prefix_to_add: Option<&str>,
        prefix_to_remove: Option<&str>,
        model_prefix: Option<&str>,
    ) -> Result<Self, TransformError> {
        let model_prefix = model_prefix.unwrap_or_default();
        match (prefix_to_add, prefix_to_remove) {
            (Some(part), None) => Self::build(part, true, model_prefix),
            (None, Some(part)) => Self::build(part, false, model_prefix),
            _ => Err(TransformError::PrefixChange {
                message: "give exactly one of `prefix_to_add` and `prefix_to_remove`".into(),
            }),
        }
    }

    /// Adds `part` after `model_prefix` (empty: at the start) where it is not there yet.
    pub fn add(part: &str, model_prefix: &str) -> Result<Self, TransformError> {
        Self::build(part, true, model_prefix)
    }

    /// Removes `part` after `model_prefix` (empty: at the start).
    pub fn remove(part: &str, model_prefix: &str) -> Result<Self, TransformError> {
        Self::build(part, false, model_prefix)
    }

    fn build(part: &str, adds: bool, model_prefix: &str) -> Result<Self, TransformError> {
        let part = part.trim_matches('.');
        if part.is_empty() {
            return Err(TransformError::PrefixChange {
                message: "the prefix to add or remove is empty".into(),
            });
        }
        let prefix = if model_prefix.is_empty() {
            String::new()
        } else {
            format!("{}\\.", regex::escape(model_prefix))
        };
        let escaped = regex::escape(part);
        let patterns = if adds {
            (
                format!("^{prefix}(?:(?!{escaped}\\.))(.+)"),
                format!("{prefix}{escaped}\\.\\1"),
            )
        } else {
            (format!("^{prefix}{escaped}\\.(.+)"), format!("{prefix}\\1"))
        };
        Ok(Self {
            part: part.to_string(),
            adds,
            model_prefix: model_prefix.trim_matches('.').to_string(),
            patterns,
        })
    }

    /// The key with the part added or removed, or `None` if this change does not apply.
    pub fn rename(&self, key: &str) -> Option<String> {
        let (head, rest) = match self.model_prefix.as_str() {
            "" => ("", key),
            prefix => (prefix, key.strip_prefix(prefix)?.strip_prefix('.')?),
        };
        let dot = if head.is_empty() { "" } else { "." };
        let part = format!("{}.", self.part);
        if self.adds {
            if rest.starts_with(&part) || rest.is_empty() {
                return None;
            }
            Some(format!("{head}{dot}{part}{rest}"))
        } else {
            let rest = rest.strip_prefix(&part).filter(|r| !r.is_empty())?;
            Some(format!("{head}{dot}{rest}"))
        }
    }

    /// The change the other way round (add becomes remove).
    pub fn reverse(&self) -> Self {
        Self::build(&self.part, !self.adds, &self.model_prefix).unwrap_or_else(|_| self.clone())
    }

    /// transformers' source regex (for display and filters).
    pub fn source_pattern(&self) -> &String {
        &self.patterns.0
    }

    /// transformers' target pattern.
    pub fn target_pattern(&self) -> &String {
        &self.patterns.1
    }
}

impl fmt::Display for PrefixChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.adds {
            "prefix_to_add"
        } else {
            "prefix_to_remove"
        };
        write!(
            f,
            "PrefixChange({what}={:?}, model_prefix={:?})",
            self.part, self.model_prefix
        )
    }
}

/// N paired renamings (source `i` becomes target `i`), switched on by a guard: the first source.
/// transformers' `GroupWeightRename`, for renames that share an intermediate name (`norm0 ->
/// norm1`, `norm1 -> norm2`), so that an already converted checkpoint (which has `norm1` and
/// `norm2` but no `norm0`) is not renamed again.
///
/// transformers switches the group on when the guard is first seen while iterating the sorted
/// keys, so the guard must sort first; here the plan checks the guard against every checkpoint
/// key before renaming any, so the order of the keys does not matter. Each pair supports `\1`
/// (transformers also supports `\2` and up in a group rename; here that is an error when the
/// renaming is made).
///
/// ```
/// use patcher_core::GroupWeightRename;
///
/// let group = GroupWeightRename::new(["norm0.", "norm1."], ["norm1.", "norm2."]).unwrap();
/// assert_eq!(group.rename("a.norm0.w").as_deref(), Some("a.norm1.w"));
/// assert_eq!(group.rename("a.norm1.w").as_deref(), Some("a.norm2.w"));
/// assert!(group.is_guard("a.norm0.w"));
/// assert!(!group.is_guard("a.norm1.w"));
/// ```
#[derive(Debug, Clone)]
pub struct GroupWeightRename {
    pairs: Vec<TransformCore>,
    sources: Vec<String>,
    targets: Vec<String>,
}

impl GroupWeightRename {
    /// Pairs `sources[i] -> targets[i]`; the first source is the guard. Errors if the lengths
    /// differ, a list is empty, or a pattern is invalid.
    pub fn new<S: AsRef<str>, T: AsRef<str>>(
        sources: impl IntoIterator<Item = S>,
        targets: impl IntoIterator<Item = T>,
    ) -> Result<Self, TransformError> {
        let sources: Vec<String> = sources
            .into_iter()
            .map(|s| s.as_ref().to_string())
            .collect();
        let targets: Vec<String> = targets
            .into_iter()
            .map(|t| t.as_ref().to_string())
            .collect();
        if sources.len() != targets.len() || sources.is_empty() {
            return Err(TransformError::GroupLength {
                sources: sources.len(),
                targets: targets.len(),
            });
        }
        let pairs = sources
            .iter()
            .zip(&targets)
            .map(|(s, t)| TransformCore::new("GroupWeightRename", vec![s.clone()], vec![t.clone()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { pairs, sources, targets })
    }

    /// Whether the guard (the first source) matches `key`.
    pub fn is_guard(&self, key: &str) -> bool {
        self.pairs[0].matches(key, None)
    }

    /// Renames `key` by the first pair whose source matches (longest match rules within a pair,
    /// pairs in order), or `None`.
    pub fn rename(&self, key: &str) -> Option<String> {
        self.rename_with(key, None).map(|(k, _)| k)
    }

    /// `(renamed key, pair index)`.
    pub(crate) fn rename_with(&self, key: &str, base: Option<&str>) -> Option<(String, usize)> {
        self.pairs
            .iter()
            .enumerate()
            .find_map(|(i, pair)| pair.rename(key, base).map(|(k, _)| (k, i)))
    }

    pub(crate) fn matches_with(&self, key: &str, base: Option<&str>) -> bool {
        self.pairs.iter().any(|pair| pair.matches(key, base))
    }

    /// The group the other way round: pairs swapped, then sorted by their new source so that the
    /// guard is the smallest (transformers' ordering contract).
    pub fn reverse(&self) -> Result<Self, TransformError> {
        let mut pairs: Vec<(String, String)> = self
            .targets
            .iter()
            .cloned()
            .zip(self.sources.iter().cloned())
            .collect();
        pairs.sort();
        let (sources, targets): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
        Self::new(sources, targets)
    }

    /// Source patterns as given, guard first.
    pub fn source_patterns(&self) -> &[String] {
        &self.sources
    }

    /// Target patterns as given.
    pub fn target_patterns(&self) -> &[String] {
        &self.targets
    }
}

impl fmt::Display for GroupWeightRename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GroupWeightRename({:?} -> {:?})",
            self.source_patterns(),
            self.target_patterns()
        )
    }
}
