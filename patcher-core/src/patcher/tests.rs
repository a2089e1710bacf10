//! Class lookup, filter-then-prepend and the class-name check of the `Patcher`.

use std::sync::Arc;

use burn::backend::NdArray;

use super::*;
use crate::ops::{Concatenate, MergeModulelist};
use crate::{WeightConverter, WeightRenaming};

type P = Patcher<NdArray>;

fn replacement(name: &'static str) -> ClassReplacement<NdArray> {
    ClassReplacement::from_factory(name, ())
}

/// transformers' `qwen2_moe` conversions plus the legacy LayerNorm renaming.
fn qwen2_moe_defaults() -> Vec<WeightTransform> {
    vec![
        WeightConverter::new(
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
        WeightConverter::new(
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
            WeightConverter::new(
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
fn exact_name_wins_over_regex() {
    let patcher = P::new()
        .class_mapping(".*Attention", replacement("Broad"))
        .unwrap()
        .class_mapping("LlamaAttention", replacement("Exact"))
        .unwrap();
    let class = |name| patcher.replacement_for(name).map(|r| r.class_name());
    assert_eq!(class("LlamaAttention"), Some("Exact"));
    assert_eq!(
        class("BertSelfAttention"),
        Some("Broad"),
        "regex is searched"
    );
    assert_eq!(class("SomethingElse"), None);
}

#[test]
fn regex_keys_follow_insertion_order_and_anchors() {
    let patcher = P::new()
        .class_mapping("^Qwen2Moe.*Experts$", replacement("First"))
        .unwrap()
        .class_mapping("Experts", replacement("Second"))
        .unwrap();
    assert_eq!(
        patcher
            .replacement_for("Qwen2MoeExperts")
            .map(|r| r.class_name()),
        Some("First")
    );
    assert_eq!(
        patcher
            .replacement_for("MixtralExperts")
            .map(|r| r.class_name()),
        Some("Second")
    );
    assert_eq!(
        patcher.mapped_class_keys().collect::<Vec<_>>(),
        ["^Qwen2Moe.*Experts$", "Experts"]
    );
}

#[test]
fn same_key_twice_replaces_in_place() {
    let patcher = P::new()
        .class_mapping("A", replacement("One"))
        .unwrap()
        .class_mapping("B", replacement("Two"))
        .unwrap()
        .class_mapping("A", replacement("Three"))
        .unwrap();
    assert_eq!(patcher.mapped_class_keys().collect::<Vec<_>>(), ["A", "B"]);
    assert_eq!(
        patcher.replacement_for("A").map(|r| r.class_name()),
        Some("Three")
    );
}

#[test]
fn invalid_regexes_are_errors() {
    let err = P::new()
        .class_mapping("Qwen(", replacement("X"))
        .unwrap_err();
    assert!(
        matches!(err, PatcherError::InvalidClassPattern { .. }),
        "{err}"
    );
    let err = P::new()
        .filtered_weight_conversion_patterns(["ok", "[bad"])
        .unwrap_err();
    assert!(
        matches!(err, PatcherError::InvalidFilterPattern { ref pattern, .. } if pattern == "[bad")
    );
}

#[test]
fn seed_filter_drops_exactly_the_expert_converters_and_extras_come_first() {
    let patcher = P::new()
        .filtered_weight_conversion_patterns([".gate_up_proj", ".down_proj"])
        .unwrap()
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
        .unwrap()
        .extra_weight_conversions(qkv_extras());
    assert_eq!(patcher.update_weight_conversions(Vec::new()).len(), 2);
    let plain = P::new().extra_weight_conversions(qkv_extras());
    assert_eq!(
        plain.update_weight_conversions(qwen2_moe_defaults()).len(),
        5
    );
}

#[test]
fn check_class_names_reports_typos_with_suggestions() {
    let patcher = P::new()
        .class_mapping("Qwen2MoeExpertz", replacement("SequentialExperts"))
        .unwrap()
        .class_mapping(".*Attention$", replacement("FusedQKVAttention"))
        .unwrap();
    let classes = [
        "Qwen2MoeModel",
        "Qwen2MoeAttention",
        "Qwen2MoeExperts",
        "Qwen2MoeExperts",
    ];
    let err = patcher.check_class_names(&classes).unwrap_err();
    let PatcherError::UnknownClasses {
        unmatched,
        model_classes,
    } = &err
    else {
        panic!("expected UnknownClasses, got {err:?}");
    };
    assert_eq!(
        unmatched.len(),
        1,
        "the regex key matches Qwen2MoeAttention"
    );
    assert_eq!(unmatched[0].key, "Qwen2MoeExpertz");
    assert_eq!(unmatched[0].suggestion.as_deref(), Some("Qwen2MoeExperts"));
    assert_eq!(model_classes.len(), 3, "listed once each");
    let message = err.to_string();
    assert!(
        message.contains("did you mean `Qwen2MoeExperts`?"),
        "{message}"
    );
    assert!(
        message.contains("Qwen2MoeModel, Qwen2MoeAttention, Qwen2MoeExperts"),
        "{message}"
    );

    let fixed = P::new()
        .class_mapping("Qwen2MoeExperts", replacement("SequentialExperts"))
        .unwrap();
    assert!(fixed.check_class_names(&classes).is_ok());
}

#[test]
fn clone_and_debug() {
    let patcher = P::new()
        .class_mapping("A", replacement("B"))
        .unwrap()
        .filtered_weight_conversion_patterns("x")
        .unwrap();
    let copy = patcher.clone();
    let debug = format!("{copy:?}");
    assert!(
        debug.contains("Patcher") && debug.contains("\"A\"") && debug.contains("\"x\""),
        "{debug}"
    );
}
