//! Which of a model's parameters a save writes ([`SaveOptions::only_params`] and
//! [`SaveOptions::skip_params`](super::SaveOptions::skip_params)).

use patcher_core::pattern::{PatternError, PatternSet};

use super::SaveOptions;

/// The compiled patterns of a save's parameter selection.
pub(crate) struct ParamFilter {
    only: Option<PatternSet>,
    skip: Option<PatternSet>,
}

impl ParamFilter {
    /// Compiles the patterns of `options` (none: every parameter is written).
    pub(crate) fn new(options: &SaveOptions) -> Result<Self, PatternError> {
        let compile = |patterns: &[String]| {
            (!patterns.is_empty())
                .then(|| PatternSet::new(patterns))
                .transpose()
        };
        Ok(Self {
            only: compile(&options.only_params)?,
            skip: compile(&options.skip_params)?,
        })
    }

    /// Whether the parameter with PyTorch name `name` is written.
    pub(crate) fn keeps(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|set| set.is_match(name))
            && !self.skip.as_ref().is_some_and(|set| set.is_match(name))
    }
}
