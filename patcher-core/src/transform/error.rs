//! Errors of building or reversing a weight transform.

use crate::pattern::PatternError;

/// A [`WeightRenaming`](crate::WeightRenaming) or [`WeightConverter`](crate::WeightConverter)
/// could not be built or reversed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// A pattern is invalid or missing.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A [`PrefixChange`](crate::PrefixChange) without exactly one prefix to add or remove.
    #[error("PrefixChange: {message}")]
    PrefixChange {
        /// What is wrong.
        message: String,
    },
    /// A [`GroupWeightRename`](crate::GroupWeightRename) whose source and target lists differ in
    /// length (or are empty).
    #[error(
        "GroupWeightRename requires N:N length matching, but found {sources} source and \
         {targets} target patterns; give one target per source"
    )]
    GroupLength {
        /// Number of source patterns.
        sources: usize,
        /// Number of target patterns.
        targets: usize,
    },
    /// A converter without ops.
    #[error(
        "WeightConverter {sources:?} -> {targets:?} has no operation; give at least one op, \
         e.g. `Concatenate::new(0)`"
    )]
    NoOperations {
        /// Source patterns as given.
        sources: Vec<String>,
        /// Target patterns as given.
        targets: Vec<String>,
    },
    /// Several sources and several targets, and no op that handles that.
    #[error(
        "WeightConverter {sources:?} -> {targets:?} maps several sources to several targets; only \
         one-to-one, one-to-many and many-to-one are supported. Split it into several converters, \
         or use an op whose `supports_many_to_many()` is true"
    )]
    ManyToMany {
        /// Source patterns as given.
        sources: Vec<String>,
        /// Target patterns as given.
        targets: Vec<String>,
    },
    /// Target patterns with different `(...)` groups: the reverse could not tell which to use.
    #[error(
        "the target patterns {targets:?} contain different capturing groups {groups:?}; all \
         target patterns must use the same `(...)` group so the transform can be reversed"
    )]
    MultipleCaptureGroups {
        /// Target patterns as given.
        targets: Vec<String>,
        /// The distinct groups found.
        groups: Vec<String>,
    },
    /// A source uses `\1` but no target has a group it could stand for.
    #[error(
        "source pattern `{pattern}` contains `\\1`, but no target pattern has a `(...)` group for \
         it to stand for; add the group to the target pattern"
    )]
    BackreferenceWithoutGroup {
        /// The source pattern.
        pattern: String,
    },
    /// A target uses `\N` but a source has fewer than `N` groups to fill it from (`\2` with one
    /// group would otherwise be written literally into the key).
    #[error(
        "target pattern `{target}` uses `\\{group}`, but source pattern `{source_pattern}` has \
         {available} `(...)` group(s) to fill it from; add capturing groups to the source pattern \
         or fix the reference"
    )]
    MissingSourceGroup {
        /// The target pattern (after preprocessing).
        target: String,
        /// The source pattern without enough groups.
        source_pattern: String,
        /// The group the target refers to (`1` for `\1`).
        group: usize,
        /// How many groups the source pattern has.
        available: usize,
    },
    /// A target refers to a group other than `\1`: as in transformers' `rename_source_key`,
    /// only the first group can be used in a renaming target.
    #[error(
        "target pattern `{target}` uses `\\{group}`, but only `\\1` (the source's first `(...)` \
         group) is supported in a target, as in transformers; capture everything you need in the \
         first group, or split the renaming in two"
    )]
    UnsupportedBackreference {
        /// The target pattern (after preprocessing).
        target: String,
        /// The group referred to.
        group: usize,
    },
    /// A renaming whose source pattern matches more than one text outside its first group: its
    /// reverse (for saving) could not tell which text to write back.
    #[error(
        "cannot reverse {renaming} to save in the checkpoint layout: its source pattern \
         `{pattern}` has {reason}. Whoever wrote this renaming can make it reversible by \
         matching only literal text outside one `(...)` group (e.g. `layers\\.(\\d+)\\.ln` \
         rather than `layers\\.\\d+\\.ln`); otherwise save the model in its own layout"
    )]
    IrreversibleRenaming {
        /// The renaming, as displayed.
        renaming: String,
        /// The source pattern at fault, as given.
        pattern: String,
        /// What in it matches several texts.
        reason: String,
    },
    /// An op of the converter has no reverse, so saving back cannot undo it.
    #[error(
        "cannot reverse {transform}: op `{op}` has no reverse (`ConversionOp::reverse` returned \
         None), so weights converted by it cannot be saved back in the checkpoint layout; \
         implement `reverse` for the op, or save the model in its own layout"
    )]
    NotReversible {
        /// The transform, as displayed.
        transform: String,
        /// The op without a reverse, as [`ConversionOp::name`](crate::ConversionOp::name) gives it.
        op: String,
    },
}
