//! The [`Patcher`]: which module classes to swap while a model is built (by class or by path,
//! typed by the slots they fill), and how the model's default weight conversions change to
//! match (a [`WeightPatch`]).

use std::fmt;

use burn::tensor::backend::Backend;
use patcher_core::pattern::IntoPatterns;
use patcher_core::{PatcherError, WeightPatch, WeightTransform};
use regex::Regex;

use crate::slot::{ClassMapping, ClassReplacement, Implements, OriginalClass, Patchable, Selector};

/// Which module classes to swap while a model is built, and how the model's default weight
/// conversions change to match: drop the ones a filter regex is found in, then put extra ones
/// first. transformers' model-patching draft (PR #43917), as a typed builder.
///
/// - [`replace::<Original, Replacement>()`](Self::replace) maps a class by type: the key is the
///   original's class name, the interface the original's, and a replacement that does not fill
///   it is a compile error.
/// - [`class_mapping`](Self::class_mapping) maps an exact class name (a key that is only a
///   prefix of a class name matches nothing); [`class_mapping_regex`](Self::class_mapping_regex)
///   a regex searched in class names; [`replace_path`](Self::replace_path) and
///   [`replace_path_regex`](Self::replace_path_regex) the slots at given Burn paths. The most
///   specific key wins: path, path regex, class, class regex; the first given among equals.
///
/// No builder call returns a `Result`. Bad regexes and converters that cannot run are kept and
/// reported, all at once, by [`BuildContext::build`](crate::BuildContext::build) (and so by
/// every load), together with keys that select no slot of the model, each with a did-you-mean.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::prelude::*;
/// use patcher_burn::layers::LinearLayer;
/// use patcher_burn::{list_slots, BuildContext, Patcher, Patchable, Slot};
///
/// type B = NdArray;
///
/// /// A linear that doubles its output: a replacement for `Linear`, built from the same
/// /// `LinearConfig`.
/// #[derive(Module, Patchable, Debug)]
/// #[patchable(crate = "patcher_burn", implements(patcher_burn::layers::LinearLayer))]
/// pub struct Doubled<B: Backend> {
///     inner: Linear<B>,
/// }
///
/// impl<B: Backend> Doubled<B> {
///     pub fn new(config: &LinearConfig, device: &B::Device) -> Self {
///         Self { inner: config.init(device) }
///     }
/// }
///
/// impl<B: Backend> patcher_burn::layers::LinearForward<B> for Doubled<B> {
///     fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
///         self.inner.forward(x) * 2.0
///     }
///     fn forward_3d(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
///         self.inner.forward(x) * 2.0
///     }
/// }
///
/// #[derive(Module, Debug)]
/// pub struct Mlp<B: Backend> {
///     up: Slot<B, dyn LinearLayer<B>>,
///     down: Slot<B, dyn LinearLayer<B>>,
/// }
///
/// impl<B: Backend> Mlp<B> {
///     pub fn new(ctx: &BuildContext<'_, B>) -> Self {
///         Self {
///             up: Slot::build::<Linear<B>>(ctx, &LinearConfig::new(4, 8)),
///             down: Slot::build::<Linear<B>>(ctx, &LinearConfig::new(8, 4)),
///         }
///     }
/// }
///
/// let device = Default::default();
/// // Every Linear slot:
/// let patcher = Patcher::<B>::new().replace::<Linear<B>, Doubled<B>>();
/// let mlp = BuildContext::build(&patcher, &device, Mlp::new).unwrap();
/// assert!(list_slots(&mlp).iter().all(|s| s.class == "Doubled"));
///
/// // Only the slot at one path:
/// let patcher = Patcher::<B>::new()
///     .replace_path("down", patcher_burn::replacement::<Doubled<B>, dyn LinearLayer<B>>());
/// let mlp = BuildContext::build(&patcher, &device, Mlp::new).unwrap();
/// let classes: Vec<_> = list_slots(&mlp).into_iter().map(|s| s.class).collect();
/// assert_eq!(classes, ["Linear", "Doubled"]);
///
/// // A key that is not a class of the model, with a did-you-mean:
/// let patcher = Patcher::<B>::new()
///     .class_mapping("Linearr", patcher_burn::replacement::<Doubled<B>, dyn LinearLayer<B>>());
/// let err = BuildContext::build(&patcher, &device, Mlp::new).unwrap_err();
/// assert!(err.to_string().contains("did you mean `Linear`?"));
/// ```
pub struct Patcher<B: Backend> {
    classes: ClassMapping<B>,
    weights: WeightPatch,
    /// Regexes of class or path keys that did not compile.
    errors: Vec<PatcherError>,
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
            classes: ClassMapping::new(),
            weights: WeightPatch::new(),
            errors: Vec::new(),
        }
    }

    /// Fills every slot built for class `O` with class `R` (built from the same arguments).
    ///
    /// `O` is the original (a class with one interface, [`OriginalClass`]); `R` must fill that
    /// interface (`#[patchable(implements(..))]`), or this does not compile.
    pub fn replace<O, R>(self) -> Self
    where
        O: OriginalClass,
        R: Implements<O::Interface> + Patchable<Backend = B>,
    {
        self.insert(
            Selector::Class(O::CLASS_NAME.to_string()),
            ClassReplacement::of::<R, O::Interface>(),
        )
    }

    /// Fills every slot built for the class named exactly `name` with `replacement` (made by
    /// [`replacement`](crate::replacement)). A key given twice keeps its first position and
    /// takes the new replacement.
    pub fn class_mapping(self, name: impl Into<String>, replacement: ClassReplacement<B>) -> Self {
        self.insert(Selector::Class(name.into()), replacement)
    }

    /// Fills every slot built for a class in whose name `pattern` is found (e.g.
    /// `"^Qwen2Moe.*Attention$"`), as transformers' class-mapping keys since 5.3.
    pub fn class_mapping_regex(
        self,
        pattern: impl Into<String>,
        replacement: ClassReplacement<B>,
    ) -> Self {
        self.insert_regex(pattern.into(), replacement, Selector::ClassRegex)
    }

    /// Fills the slot at exactly the Burn path `path` (`model.layers.0.self_attn`, as
    /// [`list_slots`](crate::list_slots) shows it), whatever its class.
    pub fn replace_path(self, path: impl Into<String>, replacement: ClassReplacement<B>) -> Self {
        self.insert(Selector::Path(path.into()), replacement)
    }

    /// Fills every slot at a Burn path in which `pattern` is found (e.g.
    /// `r"^model\.layers\.[0-3]\.self_attn$"`).
    pub fn replace_path_regex(
        self,
        pattern: impl Into<String>,
        replacement: ClassReplacement<B>,
    ) -> Self {
        self.insert_regex(pattern.into(), replacement, Selector::PathRegex)
    }

    /// Drops every default conversion with a source or target pattern in which one of these
    /// regexes is found (see [`WeightPatch::filtered_weight_conversion_patterns`]).
    pub fn filtered_weight_conversion_patterns(mut self, patterns: impl IntoPatterns) -> Self {
        self.weights = self.weights.filtered_weight_conversion_patterns(patterns);
        self
    }

    /// Adds conversions that run before the model's defaults (see
    /// [`WeightPatch::extra_weight_conversions`]).
    pub fn extra_weight_conversions<T: Into<WeightTransform>>(
        mut self,
        transforms: impl IntoIterator<Item = T>,
    ) -> Self {
        self.weights = self.weights.extra_weight_conversions(transforms);
        self
    }

    /// The weight half: filters and extra conversions.
    pub fn weights(&self) -> &WeightPatch {
        &self.weights
    }

    /// What the builder calls could not compile (empty when all is well); the model build
    /// reports them.
    pub fn errors(&self) -> Vec<PatcherError> {
        let mut errors = self.errors.clone();
        errors.extend(self.weights.errors().iter().cloned());
        errors
    }

    /// The replacement for slots of class `class_name` whose path is not known or not mapped:
    /// the exact key first, else the first class regex found in the name.
    pub fn replacement_for(&self, class_name: &str) -> Option<&ClassReplacement<B>> {
        self.classes.find(class_name, None)
    }

    /// The class-mapping keys (names, regexes and paths), in insertion order.
    pub fn mapped_keys(&self) -> impl Iterator<Item = &str> {
        self.classes.keys()
    }

    /// The model's conversions with this patcher applied (see
    /// [`WeightPatch::update_weight_conversions`]).
    pub fn update_weight_conversions(
        &self,
        defaults: Vec<WeightTransform>,
    ) -> Vec<WeightTransform> {
        self.weights.update_weight_conversions(defaults)
    }

    pub(crate) fn class_mapping_entries(&self) -> &ClassMapping<B> {
        &self.classes
    }

    fn insert(mut self, selector: Selector, replacement: ClassReplacement<B>) -> Self {
        self.classes.insert(selector, replacement);
        self
    }

    fn insert_regex(
        mut self,
        pattern: String,
        replacement: ClassReplacement<B>,
        selector: fn(Regex) -> Selector,
    ) -> Self {
        match Regex::new(&pattern) {
            Ok(regex) => self.insert(selector(regex), replacement),
            Err(e) => {
                self.errors.push(PatcherError::InvalidClassPattern {
                    key: pattern,
                    message: e.to_string(),
                });
                self
            }
        }
    }
}

impl<B: Backend> Clone for Patcher<B> {
    fn clone(&self) -> Self {
        Self {
            classes: self.classes.clone(),
            weights: self.weights.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl<B: Backend> fmt::Debug for Patcher<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mapping: Vec<(&str, &ClassReplacement<B>)> = self.classes.entries().collect();
        f.debug_struct("Patcher")
            .field("class_mapping", &mapping)
            .field(
                "filtered_weight_conversion_patterns",
                &self.weights.filter_patterns().collect::<Vec<_>>(),
            )
            .field(
                "extra_weight_conversions",
                &self.weights.extra_conversions(),
            )
            .field("errors", &self.errors())
            .finish()
    }
}
