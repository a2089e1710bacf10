//! Filter-then-prepend of the [`WeightPatch`], and its collected errors.

use std::sync::Arc;

use super::*;
use crate::ops::{Concatenate, MergeModulelist};
use crate::{WeightConverter, WeightRenaming};

type P = WeightPatch;

/// transformers' `qwen2_moe` conversions plus the legacy LayerNorm renaming.
fn qwen2_moe_defaults() -> Vec<WeightTransform> {
    vec![
        WeightConverter::try_new(
            [
                "mlp.experts.*.gate_proj.weight",
                "mlp.experts.*.up_proj.weight",
            ],
            "mlp.experts.gate_up_proj",
            vec![
                Arc::new(MergeModulelist::new(0)),
                Arc::new(Concatenate::new(1)),
            ],
        )
        .unwrap()
        .into(),
        WeightConverter::try_new(
            "mlp.experts.*.down_proj.weight",
            "mlp.experts.down_proj",
            vec![Arc::new(MergeModulelist::new(0))],
        )
        .unwrap()
        .into(),
        WeightRenaming::new("LayerNorm.gamma", "LayerNorm.weight")
            .unwrap()
            .into(),
    ]
}

fn qkv_extras() -> Vec<WeightConverter> {
    ["weight", "bias"]
        .into_iter()
        .map(|kind| {
            WeightConverter::try_new(
                [
                    format!("q_proj.{kind}"),
                    format!("k_proj.{kind}"),
                    format!("v_proj.{kind}"),
                ],
                format!("qkv_proj.{kind}"),
                vec![Arc::new(Concatenate::new(0))],
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn seed_filter_drops_exactly_the_expert_converters_and_extras_come_first() {
    let patcher = P::new()
        .filtered_weight_conversion_patterns([".gate_up_proj", ".down_proj"])
        .extra_weight_conversions(qkv_extras());
    let defaults = qwen2_moe_defaults();
    assert!(patcher.is_filtered(&defaults[0]));
    assert!(patcher.is_filtered(&defaults[1]));
    assert!(!patcher.is_filtered(&defaults[2]));

    let updated = patcher.update_weight_conversions(defaults);
    let described: Vec<String> = updated.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        described,
        [
            r#"WeightConverter(["q_proj.weight", "k_proj.weight", "v_proj.weight"] -> "qkv_proj.weight"; Concatenate(dim=0))"#,
            r#"WeightConverter(["q_proj.bias", "k_proj.bias", "v_proj.bias"] -> "qkv_proj.bias"; Concatenate(dim=0))"#,
            r#"WeightRenaming("LayerNorm.gamma" -> "LayerNorm.weight")"#,
        ]
    );
}

#[test]
fn extras_are_never_filtered_and_no_filter_keeps_everything() {
    let patcher = P::new()
        .filtered_weight_conversion_patterns("qkv")
        .extra_weight_conversions(qkv_extras());
    assert_eq!(patcher.update_weight_conversions(Vec::new()).len(), 2);
    let plain = P::new().extra_weight_conversions(qkv_extras());
    assert_eq!(
        plain.update_weight_conversions(qwen2_moe_defaults()).len(),
        5
    );
}

#[test]
fn bad_filters_and_conversions_are_collected_not_returned() {
    let patch = P::new()
        .filtered_weight_conversion_patterns(["ok", "[bad"])
        .extra_weight_conversions([
            WeightConverter::new("a(", "b").op(Concatenate::new(0)),
            WeightConverter::new("c", "d"),
        ]);
    let errors = patch.errors();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        matches!(&errors[0], PatcherError::InvalidFilterPattern { pattern, .. } if pattern == "[bad")
    );
    assert!(matches!(
        &errors[1],
        PatcherError::InvalidConversion { error: crate::TransformError::Pattern(_), .. }
    ));
    assert!(matches!(
        &errors[2],
        PatcherError::InvalidConversion { error: crate::TransformError::NoOperations { .. }, .. }
    ));
    // Every error is in the combined message, numbered.
    let message = PatcherErrors(errors.to_vec()).to_string();
    assert!(
        message.starts_with("the patcher has 3 errors:"),
        "{message}"
    );
    assert!(message.contains("3. extra weight conversion"), "{message}");
}

#[test]
fn unused_filters_are_the_ones_that_remove_nothing() {
    let patch = P::new().filtered_weight_conversion_patterns([".down_proj", "no_such_thing"]);
    assert_eq!(
        patch.unused_filters(&qwen2_moe_defaults()),
        ["no_such_thing"]
    );
    assert!(P::new().unused_filters(&qwen2_moe_defaults()).is_empty());
}

#[test]
fn clone_and_debug() {
    let patch = P::new().filtered_weight_conversion_patterns("x");
    let debug = format!("{:?}", patch.clone());
    assert!(
        debug.contains("WeightPatch") && debug.contains("x"),
        "{debug}"
    );
}
