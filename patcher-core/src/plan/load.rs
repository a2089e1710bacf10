//! Planning a load: transformers' `convert_and_load_state_dict_in_model`, phase 1, on metadata,
//! plus the conversions run backwards when the checkpoint is in a converted layout.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::ops::ConversionOp;
use crate::pattern::{natural_key_cmp, natural_key_order};
use crate::tensor::{DType, TensorMeta};
use crate::transform::WeightTransform;

use super::group::{PinnedOps, PlannedTarget, TargetStatus};
use super::pending::PendingGroups;
use super::report::{
    ConversionError, ConverterOutput, DTypeMismatch, LoadReport, ShapeMismatch, UnusedTransform,
};
use super::{ConversionPlan, Direction, PlanOptions};

/// A model parameter as the plan sees it: shape, and dtype if known.
pub(crate) type Expected<'m> = (&'m [usize], Option<DType>);

/// Where one checkpoint key goes.
struct Resolved {
    key: String,
    /// `(transform index, declared source index)` of the converter that claimed the key.
    converter: Option<(usize, usize)>,
    /// Transforms whose patterns renamed the key (renamings, then the converter).
    matched: Vec<usize>,
}

/// How the plan ends up using a converter's ops across its groups.
enum Pins {
    /// Every group pinned the same ops (by name); `None` where an op needs no pin.
    Same(PinnedOps),
    /// Groups disagree: the converter is kept as declared.
    Differ,
}

/// The load plan (see [`ConversionPlan::new`]).
pub(crate) fn plan_load(
    transforms: &[WeightTransform],
    checkpoint: &[(&str, &TensorMeta)],
    expected: &[(&str, Expected<'_>)],
    options: &PlanOptions,
) -> ConversionPlan {
    let base = options.base_model_prefix.as_deref();
    // A peer's split parameters are planned at their full shape: what the checkpoint holds.
    let tp = options.tensor_parallel.as_ref();
    let full: Vec<Option<Vec<usize>>> = expected
        .iter()
        .map(|(key, (shape, _))| tp.and_then(|tp| tp.full_shape(key, shape)))
        .collect();
    let model: HashMap<&str, Expected<'_>> = expected
        .iter()
        .zip(&full)
        .map(|((key, (shape, dtype)), full)| (*key, (full.as_deref().unwrap_or(shape), *dtype)))
        .collect();
    let in_model = |key: &str| options.without_model || model.contains_key(key);
    // The loader casts float tensors to the model's float dtype before any op runs; plan with
    // the cast metas so mixed float sources (one F16 expert among F32 ones) stack.
    let metas: Vec<TensorMeta> = checkpoint
        .iter()
        .map(|(_, meta)| match options.float_dtype {
            Some(float) if meta.dtype.is_float() => TensorMeta::new(float, meta.shape.clone()),
            _ => (*meta).clone(),
        })
        .collect();
    let mut inputs: Vec<(&str, &TensorMeta)> =
        checkpoint.iter().map(|(k, _)| *k).zip(&metas).collect();
    // Natural order: experts 0, 1, 2, ..., 10 (never lexicographic), as `dot_natural_key`.
    inputs.sort_by(|a, b| natural_key_cmp(a.0, b.0));

    // Converters that may run backwards, by their index in `options.reversible`.
    let backwards: Vec<(usize, WeightTransform)> = options
        .reversible
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_converter())
        .filter_map(|(j, t)| t.reverse().ok().map(|r| (j, r)))
        .collect();

    // A group rename is on only if its guard matches a checkpoint key (transformers switches it
    // on when the guard is first seen in key order; checking every key first is order-free).
    let inactive: HashSet<usize> = transforms
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.as_group_rename().map(|g| (i, g)))
        .filter(|(_, g)| !inputs.iter().any(|(key, _)| g.is_guard(key)))
        .map(|(i, _)| i)
        .collect();
    let mut pending = PendingGroups::default();
    let mut unexpected: Vec<(String, &str)> = Vec::new();
    // Per checkpoint key: its name after renaming and the transforms that renamed it.
    let mut renamed: HashMap<&str, (String, Vec<usize>)> = HashMap::new();
    for input in inputs {
        let resolved = resolve(transforms, &inactive, input.0, base, &model);
        renamed.insert(input.0, (resolved.key.clone(), resolved.matched.clone()));
        if let Some((i, source)) = resolved.converter {
            // `experts.7` when the model has 4 experts: not part of the stack.
            let target = model.get(resolved.key.as_str()).map(|(shape, _)| *shape);
            if super::experts::index_out_of_range(&transforms[i], &resolved.key, input.0, target) {
                unexpected.push((input.0.to_string(), input.0));
                continue;
            }
            // The outputs decide: a converter with `*` targets names them only when its ops run.
            if let Some(converter) = transforms[i].as_converter() {
                pending.add_converted(resolved.key, i, converter, source, input);
            }
            continue;
        }
        if in_model(&resolved.key) {
            pending.add_key(resolved.key, input);
            continue;
        }
        // The checkpoint may hold a converter's targets where the model wants its sources.
        let claimed = backwards.iter().find_map(|(j, t)| {
            let converter = t.as_converter()?;
            let (key, source) = t.rename_with(&resolved.key, base)?;
            Some((key, *j, converter, source))
        });
        match claimed {
            Some((key, j, converter, source)) => {
                pending.add_converted(key, transforms.len() + j, converter, source, input)
            }
            None => unexpected.push((resolved.key, input.0)),
        }
    }

    let mut report = LoadReport::default();
    let mut groups = Vec::new();
    let mut covered: HashSet<String> = HashSet::new();
    let mut used = vec![false; transforms.len()];
    let mut used_backwards: Vec<usize> = Vec::new();
    let mut pins: HashMap<usize, Pins> = HashMap::new();
    for built in pending.into_groups(None) {
        let (mut group, metas) = match built {
            Ok(built) => built,
            Err(error) => {
                report.conversion_errors.push(error);
                continue;
            }
        };
        // Backward groups carry `transforms.len() + j`; make it the index into `reversible`.
        let backward = group.transform.filter(|&i| i >= transforms.len());
        if let Some(i) = backward {
            group.transform = Some(i - transforms.len());
            group.backwards = true;
        }
        let (outputs, pinned) = match group.infer_pinned(metas) {
            Ok(inferred) => inferred,
            Err(error) => {
                report.conversion_errors.push(error.into());
                continue;
            }
        };
        let outputs: Vec<(String, TensorMeta)> = outputs
            .into_iter()
            .map(|(key, meta)| (fix_output_key(key, base, &model), meta))
            .collect();
        if group.backwards && !outputs.iter().any(|(k, _)| in_model(k)) {
            // Running the converter backwards led nowhere: the keys are plainly unexpected.
            for key in group.sources.iter().flat_map(|(_, keys)| keys) {
                if let Some((original, (name, _))) = renamed.get_key_value(key.as_str()) {
                    unexpected.push((name.clone(), *original));
                }
            }
            continue;
        }
        if let Some((key, _)) = outputs.iter().find(|(k, _)| covered.contains(k)) {
            report.conversion_errors.push(ConversionError {
                target: group.key.clone(),
                op: None,
                message: format!(
                    "produces `{key}`, which another group already produces; make the \
                     conversions' patterns exclusive"
                ),
            });
            continue;
        }
        let conversion = group
            .transform
            .map(|i| match group.backwards {
                true => format!("{} run backwards", options.reversible[i]),
                false => transforms[i].to_string(),
            })
            .unwrap_or_default();
        let sources = group.sources.iter().map(|(_, keys)| keys.len()).sum();
        for (key, meta) in outputs {
            let status = match options.without_model {
                true => TargetStatus::Ready,
                false => classify(model.get(key.as_str()), &meta),
            };
            let shard = match (tp, &status) {
                (Some(tp), TargetStatus::Ready) => match tp.slice_of(&key, &meta.shape) {
                    Ok(shard) => shard,
                    Err(error) => {
                        report.conversion_errors.push(ConversionError {
                            target: key.clone(),
                            op: None,
                            message: error.to_string(),
                        });
                        // Not written, and not reported missing on top of the error.
                        covered.insert(key);
                        continue;
                    }
                },
                _ => None,
            };
            match &status {
                TargetStatus::Ready => report.loaded += 1,
                TargetStatus::Mismatched { model_shape } => report.mismatched.push(ShapeMismatch {
                    name: key.clone(),
                    checkpoint_shape: meta.shape.clone(),
                    model_shape: model_shape.clone(),
                }),
                TargetStatus::DTypeMismatch { model_dtype } => {
                    report.dtype_mismatches.push(DTypeMismatch {
                        name: key.clone(),
                        checkpoint_dtype: meta.dtype,
                        model_dtype: *model_dtype,
                    })
                }
                TargetStatus::NotInModel if group.transform.is_some() => {
                    if options.is_ignored(&key) {
                        report.ignored.push(key.clone());
                    } else {
                        report.unexpected_outputs.push(ConverterOutput {
                            key: key.clone(),
                            conversion: conversion.clone(),
                            sources,
                        });
                    }
                }
                TargetStatus::NotInModel => unexpected.push((key.clone(), "")),
            }
            if status != TargetStatus::NotInModel {
                covered.insert(key.clone());
            }
            group
                .targets
                .push(PlannedTarget { key, meta, status, shard });
        }
        if group.ready_targets().next().is_none() {
            continue;
        }
        for key in group.sources.iter().flat_map(|(_, keys)| keys) {
            for &i in renamed.get(key.as_str()).map_or(&[][..], |(_, m)| m) {
                used[i] = true;
            }
        }
        match (group.transform, group.backwards) {
            (Some(j), true) => {
                if !used_backwards.contains(&j) {
                    used_backwards.push(j);
                }
            }
            (Some(i), false) => record_pins(&mut pins, i, pinned),
            (None, _) => {}
        }
        groups.push(group);
    }

    let (ignored, unexpected): (Vec<_>, Vec<_>) = unexpected
        .into_iter()
        .partition(|(key, original)| options.is_ignored(key) || options.is_ignored(original));
    report.ignored.extend(ignored.into_iter().map(|(k, _)| k));
    natural_key_order(&mut report.ignored);
    report.ignored.dedup();
    let mut unexpected: Vec<String> = unexpected.into_iter().map(|(k, _)| k).collect();
    natural_key_order(&mut unexpected);
    unexpected.dedup();
    report.unexpected = unexpected;
    report
        .unexpected_outputs
        .sort_by(|a, b| natural_key_cmp(&a.key, &b.key));
    let mut missing: Vec<String> = expected
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| !covered.contains(k))
        .collect();
    natural_key_order(&mut missing);
    let (ignored_missing, missing) = missing
        .into_iter()
        .partition(|k| options.is_ignored_missing(k));
    report.missing = missing;
    report.missing_ignored = ignored_missing;
    report
        .mismatched
        .sort_by(|a, b| natural_key_cmp(&a.name, &b.name));
    report
        .dtype_mismatches
        .sort_by(|a, b| natural_key_cmp(&a.name, &b.name));
    report.unused_transforms = transforms
        .iter()
        .enumerate()
        .filter(|(i, _)| !used[*i])
        .map(|(index, t)| UnusedTransform { index, description: t.to_string() })
        .collect();
    report.reversed = used_backwards
        .iter()
        .map(|&j| options.reversible[j].to_string())
        .collect();

    // What saving reverses: the forward conversions used (ops pinned to what they saw), then
    // the ones run backwards, reversed, so that saving writes the loaded layout back.
    let mut conversions: Vec<WeightTransform> = (0..transforms.len())
        .filter(|&i| used[i])
        .map(|i| match (&transforms[i], pins.remove(&i)) {
            (WeightTransform::Converter(c), Some(Pins::Same(ops))) => {
                WeightTransform::Converter(c.with_pinned_ops(ops))
            }
            (t, _) => t.clone(),
        })
        .collect();
    conversions.extend(used_backwards.iter().filter_map(|&j| {
        backwards
            .iter()
            .find(|(k, _)| *k == j)
            .map(|(_, t)| t.clone())
    }));

    ConversionPlan {
        direction: Direction::Load,
        groups,
        report,
        used: (0..transforms.len()).filter(|&i| used[i]).collect(),
        conversions,
    }
}

/// Whether a produced tensor loads into its parameter.
fn classify(param: Option<&Expected<'_>>, meta: &TensorMeta) -> TargetStatus {
    let Some((shape, dtype)) = param else {
        return TargetStatus::NotInModel;
    };
    if let Some(model_dtype) = dtype {
        if !meta.dtype.loads_into(*model_dtype) {
            return TargetStatus::DTypeMismatch { model_dtype: *model_dtype };
        }
    }
    if *shape == meta.shape.as_slice() {
        TargetStatus::Ready
    } else {
        TargetStatus::Mismatched { model_shape: shape.to_vec() }
    }
}

/// Records the ops a group of converter `index` pinned; groups that pin differently keep the
/// converter as declared (saving then checks the written shapes against the checkpoint).
fn record_pins(pins: &mut HashMap<usize, Pins>, index: usize, pinned: PinnedOps) {
    let names = |ops: &PinnedOps| -> Vec<Option<String>> {
        ops.iter()
            .map(|op| op.as_ref().map(|op: &Arc<dyn ConversionOp>| op.name()))
            .collect()
    };
    match pins.get(&index) {
        None => {
            pins.insert(index, Pins::Same(pinned));
        }
        Some(Pins::Same(existing)) if names(existing) == names(&pinned) => {}
        Some(_) => {
            pins.insert(index, Pins::Differ);
        }
    }
}

/// Gives a produced key the base model prefix (or strips it) when that makes it a model key.
fn fix_output_key(key: String, base: Option<&str>, model: &HashMap<&str, Expected<'_>>) -> String {
    if model.contains_key(key.as_str()) {
        return key;
    }
    fix_base_prefix(key, base, model)
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
    let (key, converter, _) = rename_chain(transforms, &HashSet::new(), key, None);
    let pattern = converter.map(|(i, s)| transforms[i].source_patterns()[s].as_str());
    (key, pattern)
}

/// Renamings (chained), then the first matching converter: `(key, converter, matched)`.
fn rename_chain(
    transforms: &[WeightTransform],
    inactive: &HashSet<usize>,
    original: &str,
    base: Option<&str>,
) -> (String, Option<(usize, usize)>, Vec<usize>) {
    let mut key = original.to_string();
    let mut matched = Vec::new();
    for (i, t) in transforms
        .iter()
        .enumerate()
        .filter(|(i, t)| !t.is_converter() && !inactive.contains(i))
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
    inactive: &HashSet<usize>,
    original: &str,
    base: Option<&str>,
    model: &HashMap<&str, Expected<'_>>,
) -> Resolved {
    let (key, converter, matched) = rename_chain(transforms, inactive, original, base);
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
    Resolved { key, converter, matched }
}

/// Strips or adds the base model prefix when that gives a model key, so a `ForCausalLM` model
/// loads a base-model checkpoint and the reverse.
fn fix_base_prefix(key: String, base: Option<&str>, model: &HashMap<&str, Expected<'_>>) -> String {
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
