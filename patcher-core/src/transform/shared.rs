//! What renamings and converters share: processed patterns, the compiled matcher and the scope.

use crate::pattern::{
    process_source_pattern, process_target_pattern, reverse_replacement, saturating_number,
    PatternError, PatternSet,
};

use super::TransformError;

/// Source/target patterns of one transform, as transformers' `WeightTransform.__init__` prepares
/// them, plus the optional scope.
#[derive(Debug, Clone)]
pub(crate) struct TransformCore {
    /// Processed sources (`\1` filled in, anchors propagated), in declared order.
    pub(crate) sources: Vec<String>,
    /// Processed targets (plain replacement text), in declared order.
    pub(crate) targets: Vec<String>,
    pub(crate) original_sources: Vec<String>,
    pub(crate) original_targets: Vec<String>,
    compiled: PatternSet,
    pub(crate) scope_prefix: Option<String>,
    pub(crate) base_model_prefix: Option<String>,
}

impl TransformCore {
    /// A transform as the user writes it: an empty source pattern is an error (it would match
    /// every key).
    pub(crate) fn new(
        kind: &str,
        sources: Vec<String>,
        targets: Vec<String>,
    ) -> Result<Self, TransformError> {
        if let Some(position) = sources.iter().position(String::is_empty) {
            return Err(PatternError::EmptyPattern { position }.into());
        }
        Self::build(kind, sources, targets, Targets::Patterns)
    }

    /// A core that matches no key, for a transform whose patterns did not compile (it keeps its
    /// error and reports it when validated).
    pub(crate) fn unmatchable(sources: Vec<String>, targets: Vec<String>) -> Self {
        Self {
            sources: sources.clone(),
            targets: targets.clone(),
            original_sources: sources,
            original_targets: targets,
            compiled: PatternSet::empty(),
            scope_prefix: None,
            base_model_prefix: None,
        }
    }

    /// [`Self::new`] without the empty-source check: the reverse of a renaming whose target is
    /// empty (e.g. `^model\.` -> ``) gets an anchored `^` source, which is what it needs.
    fn build(
        kind: &str,
        sources: Vec<String>,
        targets: Vec<String>,
        how: Targets<'_>,
    ) -> Result<Self, TransformError> {
        for (list, side) in [(&sources, "source"), (&targets, "target")] {
            if list.is_empty() {
                return Err(PatternError::Empty {
                    what: format!("the {side} patterns of a {kind}"),
                }
                .into());
            }
        }

        let mut processed_targets = Vec::with_capacity(targets.len());
        let mut groups: Vec<String> = Vec::new();
        for target in &targets {
            let (pattern, group) = match how {
                Targets::Patterns => process_target_pattern(target),
                Targets::SourcesOf(renaming) => reverse_replacement(target).map_err(|reason| {
                    TransformError::IrreversibleRenaming {
                        renaming: renaming.to_string(),
                        pattern: target.clone(),
                        reason,
                    }
                })?,
            };
            processed_targets.push(pattern);
            if let Some(group) = group {
                if !groups.contains(&group) {
                    groups.push(group);
                }
            }
        }
        if groups.len() > 1 {
            return Err(TransformError::MultipleCaptureGroups { targets: targets.clone(), groups });
        }
        let group = groups.pop();

        let mut processed_sources = Vec::with_capacity(sources.len());
        for (i, source) in sources.iter().enumerate() {
            let mut pattern = source.clone();
            if pattern.contains(r"\1") {
                let Some(group) = &group else {
                    return Err(TransformError::BackreferenceWithoutGroup {
                        pattern: source.clone(),
                    });
                };
                pattern = pattern.replacen(r"\1", group, 1);
            }
            // Only for consistent pairs: source i was written for target i.
            if sources.len() == targets.len() {
                pattern = process_source_pattern(&pattern, &targets[i]);
                // A reversed renaming matches only where the forward one could have written:
                // a word boundary that started its source starts the reversed source too.
                if matches!(how, Targets::SourcesOf(_))
                    && targets[i].starts_with(r"\b")
                    && !pattern.starts_with('^')
                    && !pattern.starts_with(r"\b")
                {
                    pattern.insert_str(0, r"\b");
                }
            }
            processed_sources.push(pattern);
        }

        let compiled = PatternSet::longest_first(processed_sources.clone())?;
        if processed_targets[0].contains(r"\1") {
            if let Some(i) = (0..processed_sources.len()).find(|&i| compiled.capture_count(i) == 0)
            {
                return Err(TransformError::MissingSourceGroup {
                    target: processed_targets[0].clone(),
                    source_pattern: processed_sources[i].clone(),
                    group: 1,
                    available: 0,
                });
            }
        }
        check_other_backreferences(&processed_targets, &processed_sources, &compiled)?;

        Ok(Self {
            sources: processed_sources,
            targets: processed_targets,
            original_sources: sources,
            original_targets: targets,
            compiled,
            scope_prefix: None,
            base_model_prefix: None,
        })
    }

    /// The same transform the other way round (original patterns swapped, scope kept).
    ///
    /// A renaming's reverse writes back the text its source matched, so each source must match
    /// one text outside its first group ([`reverse_replacement`]); `renaming` names it in the
    /// error. A converter's reversed targets keep transformers' processing: its ops name the
    /// keys they write (`*` filled in by a split).
    pub(crate) fn reversed(
        &self,
        kind: &str,
        renaming: Option<&str>,
    ) -> Result<Self, TransformError> {
        let how = renaming.map_or(Targets::Patterns, Targets::SourcesOf);
        let mut reversed = Self::build(
            kind,
            self.original_targets.clone(),
            self.original_sources.clone(),
            how,
        )?;
        reversed.scope_prefix = self.scope_prefix.clone();
        reversed.base_model_prefix = self.base_model_prefix.clone();
        Ok(reversed)
    }

    /// Renames `key`: `(renamed key, declared index of the source that matched)`, or `None`.
    ///
    /// With a scope, the key must start with `base.scope.` or `scope.`; that prefix is stripped
    /// before matching and put back after. `default_base` stands in for an unset
    /// `base_model_prefix` (the plan passes the model's).
    pub(crate) fn rename(&self, key: &str, default_base: Option<&str>) -> Option<(String, usize)> {
        let (prefix, rest) = self.split_scope(key, default_base)?;
        let found = self.compiled.find(rest)?;
        let mut replacement = self.targets[0].clone();
        if replacement.contains(r"\1") {
            // A group that did not take part (e.g. `(a)?b`) fills in as empty text.
            replacement = replacement.replace(r"\1", found.first_group.unwrap_or(""));
        }
        Some((
            format!("{prefix}{}", found.replace(&replacement)),
            found.index,
        ))
    }

    /// Whether a source pattern matches `key` (within the scope).
    pub(crate) fn matches(&self, key: &str, default_base: Option<&str>) -> bool {
        self.split_scope(key, default_base)
            .is_some_and(|(_, rest)| self.compiled.is_match(rest))
    }

    fn split_scope<'k>(
        &self,
        key: &'k str,
        default_base: Option<&str>,
    ) -> Option<(&'k str, &'k str)> {
        let Some(scope) = &self.scope_prefix else {
            return Some(("", key));
        };
        let scope = dotted(scope);
        let base = dotted(
            self.base_model_prefix
                .as_deref()
                .or(default_base)
                .unwrap_or(""),
        );
        let full = format!("{base}{scope}");
        // The longer prefix first: a `ForXxx` checkpoint carries the base model prefix.
        let len = if key.starts_with(&full) {
            full.len()
        } else if key.starts_with(&scope) {
            scope.len()
        } else {
            return None;
        };
        Some(key.split_at(len))
    }
}

/// How [`TransformCore::build`] turns target patterns into replacement text.
#[derive(Debug, Clone, Copy)]
enum Targets<'r> {
    /// transformers' `process_target_pattern` (anchors and lookarounds dropped, first group
    /// becomes `\1`).
    Patterns,
    /// The targets are the source patterns of the renaming named here, being reversed: each
    /// must give back exactly the text it matched.
    SourcesOf(&'r str),
}

/// `"a"` -> `"a."`, `""` -> `""`.
fn dotted(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}.")
    }
}

/// `\N` other than `\1` in a target would be written literally into the key (only `\1` is
/// replaced, as in transformers): an error naming the source that lacks the group, or saying
/// that only `\1` is supported.
fn check_other_backreferences(
    targets: &[String],
    sources: &[String],
    compiled: &PatternSet,
) -> Result<(), TransformError> {
    let other = targets
        .iter()
        .find_map(|t| backreferences(t).find(|&g| g != 1).map(|g| (t, g)));
    let Some((target, group)) = other else {
        return Ok(());
    };
    let short = (0..sources.len()).find(|&i| compiled.capture_count(i) < group);
    Err(match short {
        Some(i) => TransformError::MissingSourceGroup {
            target: target.clone(),
            source_pattern: sources[i].clone(),
            group,
            available: compiled.capture_count(i),
        },
        None => TransformError::UnsupportedBackreference { target: target.clone(), group },
    })
}

/// The group numbers of the `\N` references in `text` (saturating on absurdly long numbers).
fn backreferences(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.match_indices('\\').filter_map(move |(at, _)| {
        let digits: &str = &text[at + 1..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        saturating_number(&digits[..end]).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    })
}
