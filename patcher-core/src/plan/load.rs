//! Planning a load: transformers' `convert_and_load_state_dict_in_model`, phase 1, on metadata.

use std::collections::{HashMap, HashSet};

use crate::pattern::{natural_key_cmp, natural_key_order};
use crate::tensor::TensorMeta;
use crate::transform::WeightTransform;

use super::group::{PlannedTarget, TargetStatus};
use super::pending::PendingGroups;
use super::report::{LoadReport, ShapeMismatch, UnusedTransform};
use super::{ConversionPlan, Direction};

/// Where one checkpoint key goes.
struct Resolved {
    key: String,
    /// `(transform index, declared source index)` of the converter that claimed the key.
    converter: Option<(usize, usize)>,
    /// Transforms whose patterns renamed the key (renamings, then the converter).
    matched: Vec<usize>,
}

/// The load plan (see [`ConversionPlan::new`]).
pub(crate) fn plan_load(
    transforms: &[WeightTransform],
    checkpoint: &[(&str, &TensorMeta)],
    expected: &[(&str, &[usize])],
    base: Option<&str>,
) -> ConversionPlan {
    let model: HashMap<&str, &[usize]> = expected.iter().copied().collect();
    let mut inputs: Vec<(&str, &TensorMeta)> = checkpoint.to_vec();
    // Natural order: experts 0, 1, 2, ..., 10 (never lexicographic), as `dot_natural_key`.
    inputs.sort_by(|a, b| natural_key_cmp(a.0, b.0));

    let mut used = vec![false; transforms.len()];
    let mut pending = PendingGroups::default();
    let mut unexpected: Vec<String> = Vec::new();
    for input in inputs {
        let resolved = resolve(transforms, input.0, base, &model);
        if !model.contains_key(resolved.key.as_str()) {
            match resolved
                .converter
                .and_then(|(i, _)| transforms[i].as_converter())
            {
                // A converter group that is not in the model reports all of its targets.
                Some(converter) => {
                    let first = &converter.target_patterns()[0];
                    for target in converter.target_patterns() {
                        unexpected.push(if first.is_empty() {
                            resolved.key.clone()
                        } else {
                            resolved.key.replace(first.as_str(), target)
                        });
                    }
                }
                None => unexpected.push(resolved.key),
            }
            continue;
        }
        // `experts.7` when the model has 4 experts: not part of the stack.
        if let Some((i, _)) = resolved.converter {
            if super::experts::index_out_of_range(&transforms[i], &resolved.key, input.0, &model) {
                unexpected.push(input.0.to_string());
                continue;
            }
        }
        for &i in &resolved.matched {
            used[i] = true;
        }
        match resolved.converter {
            Some((i, source)) => {
                if let Some(converter) = transforms[i].as_converter() {
                    pending.add_converted(resolved.key, i, converter, source, input);
                }
            }
            None => pending.add_key(resolved.key, input),
        }
    }

    let mut report = LoadReport::default();
    let mut groups = Vec::new();
    let mut covered: HashSet<String> = HashSet::new();
    for built in pending.into_groups(None) {
        let (mut group, metas) = match built {
            Ok(built) => built,
            Err(error) => {
                report.conversion_errors.push(error);
                continue;
            }
        };
        let outputs = match group.infer(metas) {
            Ok(outputs) => outputs,
            Err(error) => {
                report.conversion_errors.push(error.into());
                continue;
            }
        };
        if let Some((key, _)) = outputs.iter().find(|(k, _)| covered.contains(k)) {
            report
                .conversion_errors
                .push(super::report::ConversionError {
                    target: group.key.clone(),
                    op: None,
                    message: format!(
                        "produces `{key}`, which another group already produces; make the \
                     conversions' patterns exclusive"
                    ),
                });
            continue;
        }
        for (key, meta) in outputs {
            let status = match model.get(key.as_str()) {
                Some(shape) if *shape == meta.shape.as_slice() => TargetStatus::Ready,
                Some(shape) => TargetStatus::Mismatched {
                    model_shape: shape.to_vec(),
                },
                None => TargetStatus::NotInModel,
            };
            match &status {
                TargetStatus::Ready => report.loaded += 1,
                TargetStatus::Mismatched { model_shape } => report.mismatched.push(ShapeMismatch {
                    name: key.clone(),
                    checkpoint_shape: meta.shape.clone(),
                    model_shape: model_shape.clone(),
                }),
                TargetStatus::NotInModel => unexpected.push(key.clone()),
            }
            if status != TargetStatus::NotInModel {
                covered.insert(key.clone());
            }
            group.targets.push(PlannedTarget { key, meta, status });
        }
        if group.ready_targets().next().is_some() {
            groups.push(group);
        }
    }

    natural_key_order(&mut unexpected);
    unexpected.dedup();
    report.unexpected = unexpected;
    let mut missing: Vec<String> = expected
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| !covered.contains(k))
        .collect();
    natural_key_order(&mut missing);
    report.missing = missing;
    report
        .mismatched
        .sort_by(|a, b| natural_key_cmp(&a.name, &b.name));
    report.unused_transforms = transforms
        .iter()
        .enumerate()
        .filter(|(i, _)| !used[*i])
        .map(|(index, t)| UnusedTransform {
            index,
            description: t.to_string(),
        })
        .collect();

    ConversionPlan {
        direction: Direction::Load,
        groups,
        report,
        used: (0..transforms.len()).filter(|&i| used[i]).collect(),
    }
}

/// Renames `key` like the loader does, before the base model prefix and the fallback: every
/// renaming in order (chained), then the first converter that matches. Returns the new key and
/// the converter's source pattern that matched, if a converter claimed the key (transformers'
/// `rename_source_key`). Handy to see what a checkpoint key becomes.
///
/// ```
/// use patcher_core::plan::rename_source_key;
/// use patcher_core::{WeightRenaming, WeightTransform};
///
/// let transforms: Vec<WeightTransform> =
///     vec![WeightRenaming::new(".block_sparse_moe.", ".mlp.").unwrap().into()];
/// let (key, converter) = rename_source_key(&transforms, "model.layers.0.block_sparse_moe.gate.weight");
/// assert_eq!(key, "model.layers.0.mlp.gate.weight");
/// assert_eq!(converter, None);
/// ```
pub fn rename_source_key<'t>(
    transforms: &'t [WeightTransform],
    key: &str,
) -> (String, Option<&'t str>) {
    let (key, converter, _) = rename_chain(transforms, key, None);
    let pattern = converter.map(|(i, s)| transforms[i].source_patterns()[s].as_str());
    (key, pattern)
}

/// Renamings (chained), then the first matching converter: `(key, converter, matched)`.
fn rename_chain(
    transforms: &[WeightTransform],
    original: &str,
    base: Option<&str>,
) -> (String, Option<(usize, usize)>, Vec<usize>) {
    let mut key = original.to_string();
    let mut matched = Vec::new();
    for (i, t) in transforms
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_converter())
    {
        if let Some((renamed, _)) = t.rename_with(&key, base) {
            key = renamed;
            matched.push(i);
        }
    }
    let mut converter = None;
    for (i, t) in transforms
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_converter())
    {
        if let Some((renamed, source)) = t.rename_with(&key, base) {
            key = renamed;
            converter = Some((i, source));
            matched.push(i);
            break;
        }
    }
    (key, converter, matched)
}

/// [`rename_chain`], then the base model prefix; falls back to the original key when only it is
/// a model key.
fn resolve(
    transforms: &[WeightTransform],
    original: &str,
    base: Option<&str>,
    model: &HashMap<&str, &[usize]>,
) -> Resolved {
    let (key, converter, matched) = rename_chain(transforms, original, base);
    let key = fix_base_prefix(key, base, model);
    if !model.contains_key(key.as_str()) && model.contains_key(original) {
        // The renames led nowhere but the key loads as it is (transformers 5.3+), e.g. a default
        // converter that fuses experts the patched model keeps separate.
        return Resolved {
            key: fix_base_prefix(original.to_string(), base, model),
            converter: None,
            matched: Vec::new(),
        };
    }
    Resolved {
        key,
        converter,
        matched,
    }
}

/// Strips or adds the base model prefix when that gives a model key, so a `ForCausalLM` model
/// loads a base-model checkpoint and the reverse.
fn fix_base_prefix(key: String, base: Option<&str>, model: &HashMap<&str, &[usize]>) -> String {
    let Some(base) = base else {
        return key;
    };
    if let Some(stripped) = key.strip_prefix(base).and_then(|k| k.strip_prefix('.')) {
        if model.contains_key(stripped) {
            return stripped.to_string();
        }
    }
    let added = format!("{base}.{key}");
    if model.contains_key(added.as_str()) {
        return added;
    }
    key
}
