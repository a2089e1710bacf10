//! The [`Patcher`]: which module classes to swap while a model is built, and how the model's
//! default weight conversions change to match (filter, then prepend).

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use regex::Regex;

use crate::pattern::{closest_name, IntoPatterns};
use crate::transform::WeightTransform;

#[cfg(test)]
mod tests;

/// A type-erased replacement for one module class, stored in a [`Patcher`]'s `class_mapping`.
///
/// The value inside is a factory whose concrete type is known only to the build side
/// (`patcher-burn`), which creates it with [`ClassReplacement::from_factory`] and gets it back with
/// [`ClassReplacement::downcast`]. A downcast to the wrong factory type returns `None`, and the
/// build side reports both type names ([`ClassReplacement::factory_type_name`]).
pub struct ClassReplacement<B: Backend> {
    class_name: &'static str,
    factory_type_name: &'static str,
    factory: Arc<dyn Any + Send + Sync>,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend> ClassReplacement<B> {
    /// Wraps `factory`, which builds instances of the replacement class `class_name`.
    pub fn from_factory<F: Any + Send + Sync>(class_name: &'static str, factory: F) -> Self {
        Self {
            class_name,
            factory_type_name: std::any::type_name::<F>(),
            factory: Arc::new(factory),
            _backend: PhantomData,
        }
    }

    /// Class name of the replacement (what the model lists for a patched slot).
    pub fn class_name(&self) -> &'static str {
        self.class_name
    }

    /// Rust type name of the stored factory, for error messages.
    pub fn factory_type_name(&self) -> &'static str {
        self.factory_type_name
    }

    /// The factory, if it is an `F`.
    pub fn downcast<F: Any>(&self) -> Option<&F> {
        self.factory.downcast_ref::<F>()
    }
}

impl<B: Backend> Clone for ClassReplacement<B> {
    fn clone(&self) -> Self {
        Self {
            class_name: self.class_name,
            factory_type_name: self.factory_type_name,
            factory: Arc::clone(&self.factory),
            _backend: PhantomData,
        }
    }
}

impl<B: Backend> fmt::Debug for ClassReplacement<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassReplacement")
            .field("class_name", &self.class_name)
            .field("factory", &self.factory_type_name)
            .finish()
    }
}

/// Which module classes to swap while a model is built, and how the model's default weight
/// conversions change to match: drop the ones a filter regex matches, then put extra ones first.
///
/// This is the `Patcher` of transformers' model-patching draft (PR #43917), as a builder. Class
/// names in [`class_mapping`](Patcher::class_mapping) are exact names or regexes: an exact name
/// wins, else the first key (in insertion order) whose regex is found in the class name, as in
/// transformers 5.3+. Builder methods that compile regexes return `Result`, so an invalid regex
/// is an error where it is written, never a silent non-match.
///
/// ```
/// use std::sync::Arc;
/// use burn::backend::NdArray;
/// use patcher_core::ops::Concatenate;
/// use patcher_core::{ClassReplacement, Patcher, PatcherError, WeightConverter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// struct SequentialExpertsFactory; // built by the Burn side in practice
///
/// let patcher = Patcher::<NdArray>::new()
///     .class_mapping(
///         "Qwen2MoeExperts",
///         ClassReplacement::from_factory("SequentialExperts", SequentialExpertsFactory),
///     )?
///     .filtered_weight_conversion_patterns([".gate_up_proj", ".down_proj"])?
///     .extra_weight_conversions([WeightConverter::new(
///         ["q_proj.weight", "k_proj.weight", "v_proj.weight"],
///         "qkv_proj.weight",
///         vec![Arc::new(Concatenate::new(0))],
///     )?]);
///
/// let replacement = patcher.replacement_for("Qwen2MoeExperts").unwrap();
/// assert_eq!(replacement.class_name(), "SequentialExperts");
/// assert!(patcher.replacement_for("Qwen2MoeAttention").is_none());
///
/// // A key that matches no class of the model is an error with a suggestion.
/// let err = patcher.check_class_names(&["Qwen2MoeModel", "Qwen2MoeExpert"]).unwrap_err();
/// assert!(matches!(err, PatcherError::UnknownClasses { .. }));
/// # Ok(()) }
/// ```
pub struct Patcher<B: Backend> {
    class_mapping: Vec<(ClassKey, ClassReplacement<B>)>,
    /// `None` until filters are given: transformers only filters when the list is not `None`.
    filters: Option<Vec<Regex>>,
    extra: Vec<WeightTransform>,
}

/// A class-mapping key and its compiled regex.
#[derive(Debug, Clone)]
struct ClassKey {
    key: String,
    regex: Regex,
}

impl<B: Backend> Default for Patcher<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> Patcher<B> {
    /// A patcher that changes nothing.
    pub fn new() -> Self {
        Self {
            class_mapping: Vec::new(),
            filters: None,
            extra: Vec::new(),
        }
    }

    /// Replaces the module class `name` (an exact class name, or a regex searched in class names,
    /// e.g. `"^Qwen2Moe.*Attention$"`) with `replacement`. A key given twice keeps its first
    /// position and takes the new replacement.
    pub fn class_mapping(
        mut self,
        name: impl Into<String>,
        replacement: ClassReplacement<B>,
    ) -> Result<Self, PatcherError> {
        let key = name.into();
        let regex = Regex::new(&key).map_err(|e| PatcherError::InvalidClassPattern {
            key: key.clone(),
            message: e.to_string(),
        })?;
        match self.class_mapping.iter_mut().find(|(k, _)| k.key == key) {
            Some((_, existing)) => *existing = replacement,
            None => self
                .class_mapping
                .push((ClassKey { key, regex }, replacement)),
        }
        Ok(self)
    }

    /// Drops every default conversion with a source or target pattern in which one of these
    /// regexes is found (searched in the pattern strings, not in checkpoint keys). Extra
    /// conversions are never filtered. Calling it again adds filters.
    pub fn filtered_weight_conversion_patterns(
        mut self,
        patterns: impl IntoPatterns,
    ) -> Result<Self, PatcherError> {
        let filters = self.filters.get_or_insert_with(Vec::new);
        for pattern in patterns.into_patterns() {
            let regex = Regex::new(&pattern).map_err(|e| PatcherError::InvalidFilterPattern {
                pattern: pattern.clone(),
                message: e.to_string(),
            })?;
            filters.push(regex);
        }
        Ok(self)
    }

    /// Adds conversions that run before the model's defaults (the first matching converter
    /// claims a key, so these win). Accepts renamings, converters or [`WeightTransform`]s.
    pub fn extra_weight_conversions<T: Into<WeightTransform>>(
        mut self,
        transforms: impl IntoIterator<Item = T>,
    ) -> Self {
        self.extra.extend(transforms.into_iter().map(Into::into));
        self
    }

    /// The replacement for `class_name`: the exact key first, else the first regex key found in
    /// the name.
    pub fn replacement_for(&self, class_name: &str) -> Option<&ClassReplacement<B>> {
        self.class_mapping
            .iter()
            .find(|(k, _)| k.key == class_name)
            .or_else(|| {
                self.class_mapping
                    .iter()
                    .find(|(k, _)| k.regex.is_match(class_name))
            })
            .map(|(_, replacement)| replacement)
    }

    /// The class-mapping keys, in insertion order.
    pub fn mapped_class_keys(&self) -> impl Iterator<Item = &str> {
        self.class_mapping.iter().map(|(k, _)| k.key.as_str())
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

    /// The model's conversions with this patcher applied: `defaults` without the filtered ones,
    /// after the extra conversions.
    pub fn update_weight_conversions(
        &self,
        defaults: Vec<WeightTransform>,
    ) -> Vec<WeightTransform> {
        let mut out = self.extra.clone();
        out.extend(defaults.into_iter().filter(|t| !self.is_filtered(t)));
        out
    }

    /// Checks that every class-mapping key names (or matches) a class of the model, so a typo
    /// does not silently patch nothing. The error lists the model's classes and near names.
    pub fn check_class_names(&self, model_classes: &[&str]) -> Result<(), PatcherError> {
        let unmatched: Vec<UnmatchedClassKey> = self
            .class_mapping
            .iter()
            .filter(|(k, _)| {
                !model_classes
                    .iter()
                    .any(|class| *class == k.key || k.regex.is_match(class))
            })
            .map(|(k, _)| UnmatchedClassKey {
                key: k.key.clone(),
                suggestion: closest_name(&k.key, model_classes.iter().copied(), 0.7)
                    .map(str::to_string),
            })
            .collect();
        if unmatched.is_empty() {
            return Ok(());
        }
        let mut classes: Vec<String> = Vec::new();
        for class in model_classes {
            if !classes.iter().any(|c| c == class) {
                classes.push(class.to_string());
            }
        }
        Err(PatcherError::UnknownClasses {
            unmatched,
            model_classes: classes,
        })
    }
}

impl<B: Backend> Clone for Patcher<B> {
    fn clone(&self) -> Self {
        Self {
            class_mapping: self.class_mapping.clone(),
            filters: self.filters.clone(),
            extra: self.extra.clone(),
        }
    }
}

impl<B: Backend> fmt::Debug for Patcher<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mapping: Vec<(&str, &ClassReplacement<B>)> = self
            .class_mapping
            .iter()
            .map(|(k, r)| (k.key.as_str(), r))
            .collect();
        f.debug_struct("Patcher")
            .field("class_mapping", &mapping)
            .field(
                "filtered_weight_conversion_patterns",
                &self.filter_patterns().collect::<Vec<_>>(),
            )
            .field("extra_weight_conversions", &self.extra)
            .finish()
    }
}

/// A class-mapping key that matches no class of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmatchedClassKey {
    /// The key as given to [`Patcher::class_mapping`].
    pub key: String,
    /// The model's class name closest to it, if any is close.
    pub suggestion: Option<String>,
}

/// A [`Patcher`] was given an invalid regex, or does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatcherError {
    /// A class-mapping key is not a valid regex.
    #[error(
        "class mapping key `{key}` is not a valid regex: {message}\nUse an exact class name, or \
         escape regex characters with a backslash"
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
    /// Class-mapping keys that match no class of the model.
    #[error("{}", render_unknown_classes(unmatched, model_classes))]
    UnknownClasses {
        /// The keys, with a near class name when there is one.
        unmatched: Vec<UnmatchedClassKey>,
        /// The model's class names, in the order given.
        model_classes: Vec<String>,
    },
}

fn render_unknown_classes(unmatched: &[UnmatchedClassKey], model_classes: &[String]) -> String {
    let mut out = String::new();
    for u in unmatched {
        out.push_str(&format!(
            "class mapping key `{}` matches no class of the model",
            u.key
        ));
        if let Some(s) = &u.suggestion {
            out.push_str(&format!(" (did you mean `{s}`?)"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "the model's classes are: {}\nUse one of these names, or a regex found in one of them",
        model_classes.join(", ")
    ));
    out
}

/// Whether `filter` is found in one of `transform`'s (preprocessed) patterns.
fn filter_removes(filter: &Regex, transform: &WeightTransform) -> bool {
    transform
        .source_patterns()
        .iter()
        .chain(transform.target_patterns())
        .any(|p| filter.is_match(p))
}
