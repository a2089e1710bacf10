//! Collecting checkpoint keys into groups by target key (the first phase of a plan).

use std::collections::HashMap;

use crate::ops::Groups;
use crate::tensor::TensorMeta;
use crate::transform::WeightConverter;

use super::group::{PlannedGroup, PostRenames};
use super::report::ConversionError;

/// Keys collected for one target key so far.
struct Pending<'t, 'c> {
    key: String,
    source: Source<'t, 'c>,
    /// First reason the group cannot run (two sources claim the same target).
    conflict: Option<String>,
}

enum Source<'t, 'c> {
    /// Keys matched by a converter, per declared source pattern.
    Converter {
        index: usize,
        converter: &'t WeightConverter,
        per_source: Vec<Vec<Input<'c>>>,
    },
    /// One key, only renamed (or kept).
    Key(Input<'c>),
}

/// A checkpoint key (model key on save) and what is known about its tensor.
pub(crate) type Input<'c> = (&'c str, &'c TensorMeta);

/// Groups in order of creation, keyed by target key (transformers' `param_name_to_load`).
#[derive(Default)]
pub(crate) struct PendingGroups<'t, 'c> {
    list: Vec<Pending<'t, 'c>>,
    index: HashMap<String, usize>,
}

impl<'t, 'c> PendingGroups<'t, 'c> {
    /// Adds `key_in`, matched by source pattern `source` of converter `index`, to group `key`.
    pub(crate) fn add_converted(
        &mut self,
        key: String,
        index: usize,
        converter: &'t WeightConverter,
        source: usize,
        input: Input<'c>,
    ) {
        let key_in = input.0;
        let Some(&at) = self.index.get(&key) else {
            let mut per_source = vec![Vec::new(); converter.source_patterns().len()];
            per_source[source].push(input);
            self.push(key, Source::Converter { index, converter, per_source });
            return;
        };
        let pending = &mut self.list[at];
        let conflict = match &mut pending.source {
            Source::Converter { index: existing, per_source, .. } if *existing == index => {
                per_source[source].push(input);
                None
            }
            Source::Converter { index: existing, .. } => Some(format!(
                "`{key_in}` is converted into `{key}` by conversion #{index}, which conversion \
                 #{existing} also produces; make their patterns exclusive"
            )),
            Source::Key((first, _)) => Some(format!(
                "`{key_in}` (conversion #{index}) and `{first}` both map to `{key}`; make the \
                 patterns exclusive or drop one key from the checkpoint"
            )),
        };
        if pending.conflict.is_none() {
            pending.conflict = conflict;
        }
    }

    /// Adds `key_in`, renamed to `key` without a converter.
    pub(crate) fn add_key(&mut self, key: String, input: Input<'c>) {
        let key_in = input.0;
        let Some(&at) = self.index.get(&key) else {
            self.push(key, Source::Key(input));
            return;
        };
        let pending = &mut self.list[at];
        let conflict = match &pending.source {
            Source::Key((first, _)) => format!(
                "checkpoint keys `{first}` and `{key_in}` both map to `{key}`; drop one of them \
                 or add a renaming that tells them apart"
            ),
            Source::Converter { index, .. } => format!(
                "`{key_in}` maps to `{key}`, which conversion #{index} also produces; make the \
                 patterns exclusive or drop one key from the checkpoint"
            ),
        };
        if pending.conflict.is_none() {
            pending.conflict = Some(conflict);
        }
    }

    fn push(&mut self, key: String, source: Source<'t, 'c>) {
        self.index.insert(key.clone(), self.list.len());
        self.list.push(Pending { key, source, conflict: None });
    }

    /// The groups (targets not filled in yet) with their input metas, or why one cannot run.
    pub(crate) fn into_groups(
        self,
        post_renamings: Option<PostRenames>,
    ) -> Vec<Result<(PlannedGroup, Groups<TensorMeta>), ConversionError>> {
        self.list
            .into_iter()
            .map(|pending| {
                if let Some(message) = pending.conflict {
                    return Err(ConversionError { target: pending.key, op: None, message });
                }
                Ok(match pending.source {
                    Source::Converter { index, converter, per_source } => {
                        let mut sources = Groups::new();
                        let mut metas = Groups::new();
                        let patterns = converter.source_patterns();
                        for (pattern, inputs) in patterns.iter().zip(per_source) {
                            if inputs.is_empty() {
                                continue;
                            }
                            let keys = inputs.iter().map(|(k, _)| k.to_string()).collect();
                            sources.push(pattern.clone(), keys);
                            metas.push(
                                pattern.clone(),
                                inputs.into_iter().map(|(_, m)| m.clone()).collect(),
                            );
                        }
                        let group = PlannedGroup {
                            transform: Some(index),
                            backwards: false,
                            ops: converter.ops().to_vec(),
                            source_patterns: patterns.to_vec(),
                            target_patterns: converter.target_patterns().to_vec(),
                            key: pending.key,
                            sources,
                            targets: Vec::new(),
                            post_renamings: post_renamings.clone(),
                        };
                        (group, metas)
                    }
                    Source::Key((key_in, meta)) => {
                        let group = PlannedGroup {
                            transform: None,
                            backwards: false,
                            ops: Vec::new(),
                            source_patterns: vec![key_in.to_string()],
                            target_patterns: vec![pending.key.clone()],
                            sources: Groups::new().with(key_in, vec![key_in.to_string()]),
                            key: pending.key,
                            targets: Vec::new(),
                            post_renamings: None,
                        };
                        (group, Groups::new().with(key_in, vec![meta.clone()]))
                    }
                })
            })
            .collect()
    }
}
