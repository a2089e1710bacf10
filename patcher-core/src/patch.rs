//! [`WeightPatch`]: the weight half of a `Patcher` (transformers' model-patching draft, PR
//! #43917): which of a model's default conversions to drop, and which to run first.
//!
//! The class half (which module classes to swap) lives with the slots, in `patcher-burn`, whose
//! `Patcher<B>` holds a `WeightPatch`. Builder calls never return `Result`: what cannot be
//! compiled is kept as a [`PatcherError`] and reported, all errors at once, when the model is
//! built or loaded.

use std::fmt;

use regex::Regex;

use crate::pattern::IntoPatterns;
use crate::transform::{TransformError, WeightTransform};

#[cfg(test)]
mod tests;

/// How a patcher changes a model's default weight conversions: drop the ones a filter regex is
/// found in, then put extra ones first.
///
/// ```
/// use patcher_core::ops::Concatenate;
/// use patcher_core::{WeightConverter, WeightPatch, WeightTransform};
///
/// let patch = WeightPatch::new()
///     .filtered_weight_conversion_patterns([".gate_up_proj", ".down_proj"])
///     .extra_weight_conversions([WeightConverter::new(
///         ["q_proj.weight", "k_proj.weight", "v_proj.weight"],
///         "qkv_proj.weight",
///     )
///     .op(Concatenate::new(0))]);
/// assert!(patch.errors().is_empty());
///
/// let defaults: Vec<WeightTransform> = vec![
///     WeightConverter::new("mlp.experts.*.down_proj.weight", "mlp.experts.down_proj")
///         .op(patcher_core::ops::MergeModulelist::new(0))
///         .into(),
/// ];
/// let conversions = patch.update_weight_conversions(defaults);
/// assert_eq!(conversions.len(), 1); // the extra one; the default was filtered out
///
/// // A bad regex is kept and reported, not returned at the call.
/// let patch = WeightPatch::new().filtered_weight_conversion_patterns(["experts.("]);
/// assert_eq!(patch.errors().len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct WeightPatch {
    /// `None` until filters are given: transformers only filters when the list is not `None`.
    filters: Option<Vec<Regex>>,
    extra: Vec<WeightTransform>,
    errors: Vec<PatcherError>,
}

impl WeightPatch {
    /// A patch that changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every default conversion with a source or target pattern in which one of these
    /// regexes is found (searched in the pattern strings, not in checkpoint keys). Extra
    /// conversions are never filtered. Calling it again adds filters. An invalid regex is kept
    /// as an error (see [`errors`](Self::errors)).
    pub fn filtered_weight_conversion_patterns(mut self, patterns: impl IntoPatterns) -> Self {
        let filters = self.filters.get_or_insert_with(Vec::new);
        for pattern in patterns.into_patterns() {
            match Regex::new(&pattern) {
                Ok(regex) => filters.push(regex),
                Err(e) => self
                    .errors
                    .push(PatcherError::InvalidFilterPattern { pattern, message: e.to_string() }),
            }
        }
        self
    }

    /// Adds conversions that run before the model's defaults (the first matching converter
    /// claims a key, so these win). Accepts renamings, converters or [`WeightTransform`]s; one
    /// that cannot run (see [`WeightConverter::validate`](crate::WeightConverter::validate)) is
    /// kept as an error.
    pub fn extra_weight_conversions<T: Into<WeightTransform>>(
        mut self,
        transforms: impl IntoIterator<Item = T>,
    ) -> Self {
        for transform in transforms.into_iter().map(Into::into) {
            if let Err(error) = transform.validate() {
                self.errors.push(PatcherError::InvalidConversion {
                    transform: transform.to_string(),
                    error,
                });
            }
            self.extra.push(transform);
        }
        self
    }

    /// What the builder calls could not compile, in call order (empty when all is well).
    pub fn errors(&self) -> &[PatcherError] {
        &self.errors
    }

    /// The filter regexes, as given (empty if none).
    pub fn filter_patterns(&self) -> impl Iterator<Item = &str> {
        self.filters.iter().flatten().map(Regex::as_str)
    }

    /// The extra conversions, in order.
    pub fn extra_conversions(&self) -> &[WeightTransform] {
        &self.extra
    }

    /// Whether a filter regex is found in one of `transform`'s (preprocessed) patterns.
    pub fn is_filtered(&self, transform: &WeightTransform) -> bool {
        self.filters
            .iter()
            .flatten()
            .any(|filter| filter_removes(filter, transform))
    }

    /// The filter patterns that remove none of `defaults` (probably a typo; the load report lists
    /// them as unused filters).
    pub fn unused_filters(&self, defaults: &[WeightTransform]) -> Vec<String> {
        let Some(filters) = &self.filters else {
            return Vec::new();
        };
        filters
            .iter()
            .filter(|f| !defaults.iter().any(|t| filter_removes(f, t)))
            .map(|f| f.as_str().to_string())
            .collect()
    }

    /// The model's conversions with this patch applied: `defaults` without the filtered ones,
    /// after the extra conversions.
    pub fn update_weight_conversions(
        &self,
        defaults: Vec<WeightTransform>,
    ) -> Vec<WeightTransform> {
        let mut out = self.extra.clone();
        out.extend(defaults.into_iter().filter(|t| !self.is_filtered(t)));
        out
    }
}

/// Whether `filter` is found in one of `transform`'s (preprocessed) patterns.
fn filter_removes(filter: &Regex, transform: &WeightTransform) -> bool {
    transform
        .source_patterns()
        .iter()
        .chain(transform.target_patterns())
        .any(|p| filter.is_match(p))
}

/// A key of a patcher (class name, class regex, slot path or path regex) that selects no slot
/// of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmatchedKey {
    /// The key as given.
    pub key: String,
    /// The model's name (class or path) closest to it, if any is close.
    pub suggestion: Option<String>,
}

/// What a patcher could not compile, or a key of it that does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatcherError {
    /// A class-mapping or path regex is not a valid regex.
    #[error(
        "patcher regex `{key}` is not a valid regex: {message}\nEscape regex characters with a \
         backslash, or use the exact-name call (`class_mapping`, `replace_path`)"
    )]
    InvalidClassPattern {
        /// The key.
        key: String,
        /// The regex compiler's message.
        message: String,
    },
    /// A filter pattern is not a valid regex.
    #[error(
        "filtered weight conversion pattern `{pattern}` is not a valid regex: {message}\nEscape \
         regex characters with a backslash"
    )]
    InvalidFilterPattern {
        /// The pattern.
        pattern: String,
        /// The regex compiler's message.
        message: String,
    },
    /// An extra conversion that cannot run.
    #[error("extra weight conversion {transform} cannot run: {error}")]
    InvalidConversion {
        /// The conversion, as displayed.
        transform: String,
        /// Why.
        error: TransformError,
    },
    /// Class keys that match no slot class of the model.
    #[error("{}", render_unmatched("class mapping key", ("class", "classes"), unmatched, known))]
    UnknownClasses {
        /// The keys, with a near class name when there is one.
        unmatched: Vec<UnmatchedKey>,
        /// The model's slot classes, in first-built order.
        known: Vec<String>,
    },
    /// Path keys that match no slot path of the model.
    #[error("{}", render_unmatched("slot path key", ("slot path", "slot paths"), unmatched, known))]
    UnknownPaths {
        /// The keys, with a near slot path when there is one.
        unmatched: Vec<UnmatchedKey>,
        /// The model's slot paths, in visiting order.
        known: Vec<String>,
    },
}

fn render_unmatched(
    what: &str,
    (kind, kinds): (&str, &str),
    unmatched: &[UnmatchedKey],
    known: &[String],
) -> String {
    let mut out = String::new();
    for u in unmatched {
        out.push_str(&format!(
            "{what} `{}` matches no {kind} of the model",
            u.key
        ));
        if let Some(s) = &u.suggestion {
            out.push_str(&format!(" (did you mean `{s}`?)"));
        }
        out.push('\n');
    }
    // A listing capped like the load report's: a huge model should not flood the message.
    const SHOWN: usize = 32;
    let mut listed = known
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if known.len() > SHOWN {
        listed.push_str(&format!(", ... ({} more)", known.len() - SHOWN));
    }
    out.push_str(&format!(
        "the model's {kinds} are: {listed}\nUse one of these names exactly, or the regex call"
    ));
    out
}

/// All the errors of a patcher, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatcherErrors(pub Vec<PatcherError>);

impl fmt::Display for PatcherErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "the patcher has {} errors:", many.len())?;
                for (i, e) in many.iter().enumerate() {
                    write!(f, "\n{}. {e}", i + 1)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PatcherErrors {}
