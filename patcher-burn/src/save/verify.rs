//! A save checks, before writing, that its file loads back: the load of the keys and shapes it
//! is about to write (metadata only) must map exactly onto the model's parameters through the
//! same conversions, and give back the layout that was loaded.

use std::collections::HashMap;

use patcher_core::plan::PlanOptions;
use patcher_core::{ConversionPlan, TensorMeta, WeightTransform};

use super::SaveError;

/// Checks `written` (checkpoint keys and metas) against the model's `params`.
///
/// - The load plan of `written` through `conversions` is clean: no unexpected, missing or
///   mismatched key, no conversion error. (A renaming whose reverse was skipped leaves keys the
///   load cannot map.)
/// - Every conversion takes part in that load, as it did in the original one.
/// - When the loaded checkpoint's layout is known, every key it had is written with its shape.
///   (A plain `Concatenate` under grouped-query attention reverses into even chunks: the load
///   back would fit, the file would not be the checkpoint's layout.) With `same_dtypes` (no
///   float dtype asked for), every float key is written in the float dtype it was loaded from.
pub(crate) fn verify(
    written: &[(String, TensorMeta)],
    params: &[(String, TensorMeta)],
    conversions: &[WeightTransform],
    options: &PlanOptions,
    source_layout: &[(String, TensorMeta)],
    same_dtypes: bool,
) -> Result<(), SaveError> {
    let plan = ConversionPlan::new(conversions, written, params, options);
    let report = plan.report();
    if !report.is_clean() {
        let mut keys: Vec<String> = report.unexpected.clone();
        keys.extend(report.unexpected_outputs.iter().map(|o| o.key.clone()));
        keys.extend(report.missing.iter().cloned());
        keys.extend(report.mismatched.iter().map(|m| m.name.clone()));
        keys.extend(report.conversion_errors.iter().map(|e| e.target.clone()));
        return Err(SaveError::Mismatch {
            message: format!("loading the file back would not fit the model:\n{report}"),
            conversion: None,
            keys,
        });
    }
    if let Some(unused) = report.unused_transforms.first() {
        return Err(SaveError::Mismatch {
            message: "a conversion the load used would not take part in loading the file back \
                      (its reverse was skipped or renamed the keys elsewhere)"
                .into(),
            conversion: Some(unused.description.clone()),
            keys: Vec::new(),
        });
    }

    let written: HashMap<&str, &TensorMeta> =
        written.iter().map(|(k, m)| (k.as_str(), m)).collect();
    let wrong: Vec<(&str, String)> = source_layout
        .iter()
        .filter_map(|(key, meta)| match written.get(key.as_str()) {
            Some(w) if w.shape != meta.shape => Some((
                key.as_str(),
                format!("{key} (loaded {:?}, would write {:?})", meta.shape, w.shape),
            )),
            Some(w) if same_dtypes && w.dtype != meta.dtype && meta.dtype.is_float() => Some((
                key.as_str(),
                format!(
                    "{key} (loaded as {}, would write {})",
                    meta.dtype.as_str(),
                    w.dtype.as_str()
                ),
            )),
            Some(_) => None,
            None => Some((
                key.as_str(),
                format!("{key} (loaded, would not be written)"),
            )),
        })
        .collect();
    let Some((first, _)) = wrong.first() else {
        return Ok(());
    };
    let shown: Vec<&str> = wrong
        .iter()
        .take(3)
        .map(|(_, line)| line.as_str())
        .collect();
    Err(SaveError::Mismatch {
        message: format!(
            "the file would not have the layout that was loaded ({} keys differ; {})",
            wrong.len(),
            shown.join("; ")
        ),
        conversion: conversion_of(conversions, first),
        keys: wrong.iter().map(|(key, _)| key.to_string()).collect(),
    })
}

/// The conversion whose patterns match the checkpoint key `key`, if one does.
fn conversion_of(conversions: &[WeightTransform], key: &str) -> Option<String> {
    conversions
        .iter()
        .find(|t| t.rename_source_key(key).is_some())
        .map(|t| t.to_string())
}
