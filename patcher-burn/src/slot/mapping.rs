//! The class mapping of a [`Patcher`](crate::Patcher): which replacement fills which slots.
//!
//! Entries are typed by the interface of the slots they fill: a [`ClassReplacement`] is made by
//! [`replacement`] (or by `Patcher::replace`) from a class that implements the interface, so the
//! builder it carries is the interface's. A slot takes an entry's builder only for its own
//! interface; an entry selecting a slot of another interface is a build error, never a wrong
//! module.

use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use patcher_core::pattern::closest_name;
use patcher_core::{PatcherError, UnmatchedKey};
use regex::Regex;

use super::class::{Implements, InterfaceKey, SlotInterface};
use super::{BuildContext, Slot};

/// Builds a replacement's module for a slot of interface `K` from the interface's arguments;
/// the last argument is the class the slot was built for.
pub(crate) type BuildFn<B, K> = for<'a> fn(
    <K as InterfaceKey>::Args<'a>,
    &BuildContext<'_, B>,
    &'static str,
) -> Slot<B, <K as InterfaceKey>::Dyn<B>>;

/// A replacement class, with the builder of the slots of one interface it fills. Made by
/// [`replacement`]; given to [`Patcher::class_mapping`](crate::Patcher::class_mapping) and the
/// other mapping calls.
pub struct ClassReplacement<B: Backend> {
    class_name: &'static str,
    interface: TypeId,
    interface_name: &'static str,
    /// The `BuildFn<B, K>` of the interface `K` whose type id is `interface`.
    build: Arc<dyn Any + Send + Sync>,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend> ClassReplacement<B> {
    /// The class `R`, filling slots of interface `K`.
    pub(crate) fn of<R, K>() -> Self
    where
        R: Implements<K> + crate::Patchable<Backend = B>,
        K: InterfaceKey,
    {
        let build: BuildFn<B, K> = build_replacement::<R, K>;
        Self {
            class_name: R::CLASS_NAME,
            interface: TypeId::of::<K>(),
            interface_name: K::NAME,
            build: Arc::new(build),
            _backend: PhantomData,
        }
    }

    /// The replacement's class name (what [`list_slots`](crate::list_slots) shows for a slot it
    /// fills).
    pub fn class_name(&self) -> &'static str {
        self.class_name
    }

    /// The name of the interface whose slots it fills.
    pub fn interface_name(&self) -> &'static str {
        self.interface_name
    }

    /// The builder for slots of interface `K`, or `None` if the replacement fills another
    /// interface's slots.
    pub(crate) fn builder<K: InterfaceKey>(&self) -> Option<BuildFn<B, K>> {
        if self.interface != TypeId::of::<K>() {
            return None;
        }
        // Same interface, so the stored value is exactly a `BuildFn<B, K>` (made in `of`).
        self.build.downcast_ref::<BuildFn<B, K>>().copied()
    }
}

fn build_replacement<R: Implements<K>, K: InterfaceKey>(
    args: K::Args<'_>,
    ctx: &BuildContext<'_, R::Backend>,
    original: &'static str,
) -> Slot<R::Backend, K::Dyn<R::Backend>> {
    Slot::from_parts::<R>(R::construct::<R::Backend>(args, ctx), original, true)
}

/// The class `R` as a replacement in slots of interface `I`.
///
/// `R` must implement `I` (`#[patchable(implements(Trait))]`), so it is built from the same
/// arguments as every class of `I`; a mismatch is a compile error here. Most code registers
/// by type instead, with [`Patcher::replace`](crate::Patcher::replace); this value is what the
/// name, regex and path calls take.
///
/// ```text
/// Patcher::new().class_mapping(
///     "LlamaAttention",
///     replacement::<FusedQkvAttention<B>, dyn AttentionInterface<B>>(),
/// )
/// ```
pub fn replacement<R, I>() -> ClassReplacement<R::Backend>
where
    R: Implements<I::Key>,
    I: ?Sized + SlotInterface,
{
    ClassReplacement::of::<R, I::Key>()
}

impl<B: Backend> Clone for ClassReplacement<B> {
    fn clone(&self) -> Self {
        Self {
            class_name: self.class_name,
            interface: self.interface,
            interface_name: self.interface_name,
            build: Arc::clone(&self.build),
            _backend: PhantomData,
        }
    }
}

impl<B: Backend> fmt::Debug for ClassReplacement<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassReplacement")
            .field("class", &self.class_name)
            .field("interface", &self.interface_name)
            .finish()
    }
}

/// Which slots a mapping entry fills.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    /// Slots built for exactly this class.
    Class(String),
    /// Slots built for a class in which this regex is found.
    ClassRegex(Regex),
    /// The slot at exactly this Burn path (`model.layers.0.self_attn`).
    Path(String),
    /// Slots at a Burn path in which this regex is found.
    PathRegex(Regex),
}

impl Selector {
    /// The key as given.
    fn key(&self) -> &str {
        match self {
            Self::Class(key) | Self::Path(key) => key,
            Self::ClassRegex(regex) | Self::PathRegex(regex) => regex.as_str(),
        }
    }

    /// The more specific selectors win: a path over a path regex over a class over a class
    /// regex.
    fn rank(&self) -> u8 {
        match self {
            Self::Path(_) => 0,
            Self::PathRegex(_) => 1,
            Self::Class(_) => 2,
            Self::ClassRegex(_) => 3,
        }
    }

    fn is_path(&self) -> bool {
        matches!(self, Self::Path(_) | Self::PathRegex(_))
    }

    fn same_key(&self, other: &Self) -> bool {
        self.rank() == other.rank() && self.key() == other.key()
    }

    /// Whether it selects a slot of class `class` at `path` (unknown paths match no path key).
    fn selects(&self, class: &str, path: Option<&str>) -> bool {
        match self {
            Self::Class(key) => key == class,
            Self::ClassRegex(regex) => regex.is_match(class),
            Self::Path(key) => path == Some(key.as_str()),
            Self::PathRegex(regex) => path.is_some_and(|p| regex.is_match(p)),
        }
    }
}

/// A patcher's class mapping, in insertion order.
pub(crate) struct ClassMapping<B: Backend> {
    entries: Vec<(Selector, ClassReplacement<B>)>,
}

impl<B: Backend> ClassMapping<B> {
    pub(crate) fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// Adds an entry; a key given twice (same kind) keeps its position and takes the new
    /// replacement.
    pub(crate) fn insert(&mut self, selector: Selector, replacement: ClassReplacement<B>) {
        match self.entries.iter_mut().find(|(s, _)| s.same_key(&selector)) {
            Some((_, existing)) => *existing = replacement,
            None => self.entries.push((selector, replacement)),
        }
    }

    /// The replacement for a slot of `class` at `path`: the most specific selector that
    /// selects it, the first inserted among equals.
    pub(crate) fn find(&self, class: &str, path: Option<&str>) -> Option<&ClassReplacement<B>> {
        self.entries
            .iter()
            .filter(|(s, _)| s.selects(class, path))
            .min_by_key(|(s, _)| s.rank())
            .map(|(_, r)| r)
    }

    /// Whether an entry selects by path (the build then learns the slots' paths first).
    pub(crate) fn has_paths(&self) -> bool {
        self.entries.iter().any(|(s, _)| s.is_path())
    }

    /// The keys, as given, in insertion order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(s, _)| s.key())
    }

    /// The entries, with their keys.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &ClassReplacement<B>)> {
        self.entries.iter().map(|(s, r)| (s.key(), r))
    }

    /// Errors for the keys that select no slot: class keys against the model's slot classes,
    /// path keys against its slot paths; each with a did-you-mean.
    pub(crate) fn unmatched(&self, classes: &[&str], paths: &[String]) -> Vec<PatcherError> {
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let missing = |is_path: bool, known: &[&str]| -> Vec<UnmatchedKey> {
            self.entries
                .iter()
                .map(|(s, _)| s)
                .filter(|s| s.is_path() == is_path)
                .filter(|s| {
                    !known.iter().any(|name| match is_path {
                        true => s.selects("", Some(name)),
                        false => s.selects(name, None),
                    })
                })
                .map(|s| UnmatchedKey {
                    key: s.key().to_string(),
                    suggestion: closest_name(s.key(), known.iter().copied(), 0.7)
                        .map(str::to_string),
                })
                .collect()
        };
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        let mut errors = Vec::new();
        let classes_missing = missing(false, classes);
        if !classes_missing.is_empty() {
            errors.push(PatcherError::UnknownClasses {
                unmatched: classes_missing,
                known: owned(classes),
            });
        }
        let paths_missing = missing(true, &paths);
        if !paths_missing.is_empty() {
            errors.push(PatcherError::UnknownPaths {
                unmatched: paths_missing,
                known: owned(&paths),
            });
        }
        errors
    }
}

impl<B: Backend> Clone for ClassMapping<B> {
    fn clone(&self) -> Self {
        Self { entries: self.entries.clone() }
    }
}
