//! How a `Patcher` selects slots: by type, exact class name, class regex, slot path and path
//! regex; which key wins; and every key or builder mistake reported, all at once, when the model
//! is built.

use crate::slot_model::*;
use burn::backend::NdArray;
use burn_patcher::ops::Concatenate;
use burn_patcher::{
    list_slots, replacement, BuildContext, BuildError, Patcher, PatcherError, PatcherErrors,
    WeightConverter,
};

type B = NdArray;

fn build(patcher: &Patcher<B>) -> Result<TinyModel<B>, BuildError> {
    BuildContext::build(patcher, &Default::default(), |ctx| {
        TinyModel::new(ctx, &TinyConfig::new())
    })
}

/// `(path, class)` of every slot.
fn classes(model: &TinyModel<B>) -> Vec<(String, String)> {
    list_slots(model)
        .into_iter()
        .map(|s| (s.path, s.class))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect()
}

fn fused() -> burn_patcher::ClassReplacement<B> {
    replacement::<FusedAttention<B>, dyn AttentionLayer<B>>()
}

/// The single error of a failed build, as the patcher reports it.
fn patcher_errors(result: Result<TinyModel<B>, BuildError>) -> Vec<PatcherError> {
    match result {
        Err(BuildError::Patcher(PatcherErrors(errors))) => errors,
        Err(other) => panic!("expected patcher errors, got {other}"),
        Ok(_) => panic!("expected patcher errors, the build succeeded"),
    }
}

#[test]
fn one_path_replaces_one_slot() {
    let patcher = Patcher::new().replace_path("layers.1.self_attn", fused());
    let model = build(&patcher).unwrap();
    assert_eq!(
        classes(&model),
        pairs(&[
            ("layers.0", "TinyLayer"),
            ("layers.0.self_attn", "TinyAttention"),
            ("layers.1", "TinyLayer"),
            ("layers.1.self_attn", "FusedAttention"),
            ("mlp", "TinyMlp"),
            ("final_mlp", "TinyMlp"),
        ])
    );
    // The model runs with its one replaced layer.
    let x = burn::tensor::Tensor::<B, 2>::ones([3, INPUT], &Default::default());
    assert_eq!(model.forward(x).dims(), [3, OUTPUT]);
}

#[test]
fn a_path_regex_replaces_every_slot_it_is_found_in() {
    let patcher = Patcher::new().replace_path_regex(r"^layers\.\d+\.self_attn$", fused());
    let model = build(&patcher).unwrap();
    let replaced: Vec<_> = list_slots(&model)
        .into_iter()
        .filter(|s| s.replaced)
        .map(|s| s.path)
        .collect();
    assert_eq!(replaced, ["layers.0.self_attn", "layers.1.self_attn"]);
}

#[test]
fn a_path_wins_over_a_class() {
    // Every TinyAttention becomes fused, except the one at layers.0, kept as the original.
    let patcher = Patcher::new()
        .replace::<Attention<B>, FusedAttention<B>>()
        .replace_path(
            "layers.0.self_attn",
            replacement::<Attention<B>, dyn AttentionLayer<B>>(),
        );
    let model = build(&patcher).unwrap();
    let attention: Vec<_> = list_slots(&model)
        .into_iter()
        .filter(|s| s.path.ends_with("self_attn"))
        .map(|s| s.class)
        .collect();
    assert_eq!(attention, ["TinyAttention", "FusedAttention"]);
}

#[test]
fn an_exact_key_is_never_a_prefix_and_gets_a_did_you_mean() {
    // `TinyAttentio` is found in `TinyAttention` as a regex would be; as an exact key it matches
    // nothing, and says so.
    let patcher = Patcher::new().class_mapping("TinyAttentio", fused());
    let errors = patcher_errors(build(&patcher));
    let [PatcherError::UnknownClasses { unmatched, known }] = errors.as_slice() else {
        panic!("{errors:?}");
    };
    assert_eq!(unmatched[0].key, "TinyAttentio");
    assert_eq!(unmatched[0].suggestion.as_deref(), Some("TinyAttention"));
    assert_eq!(known, &["TinyLayer", "TinyAttention", "TinyMlp"]);
}

#[test]
fn keys_that_select_nothing_are_all_reported() {
    let patcher = Patcher::new()
        .class_mapping_regex("^Nothing", fused())
        .replace_path("layers.1.self_atn", fused())
        .replace_path_regex(r"^decoder\.", fused());
    let errors = patcher_errors(build(&patcher));
    let [PatcherError::UnknownClasses { unmatched: classes, .. }, PatcherError::UnknownPaths { unmatched: paths, known }] =
        errors.as_slice()
    else {
        panic!("{errors:?}");
    };
    assert_eq!(classes[0].key, "^Nothing");
    let keys: Vec<_> = paths.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(keys, ["layers.1.self_atn", r"^decoder\."]);
    assert_eq!(paths[0].suggestion.as_deref(), Some("layers.1.self_attn"));
    assert_eq!(known.len(), 6, "every slot path is listed: {known:?}");
    let message = BuildError::Patcher(PatcherErrors(errors.clone())).to_string();
    assert!(
        message.starts_with("the patcher has 2 errors:"),
        "{message}"
    );
    assert!(
        message.contains("did you mean `layers.1.self_attn`?"),
        "{message}"
    );
}

#[test]
fn a_path_key_of_another_interface_names_the_path() {
    let patcher = Patcher::new().replace_path(
        "mlp",
        replacement::<FusedAttention<B>, dyn AttentionLayer<B>>(),
    );
    let err = build(&patcher).expect_err("a wrong interface fails the build");
    assert_eq!(
        err,
        BuildError::WrongInterface {
            original: "TinyMlp",
            path: Some("mlp".into()),
            replacement: "FusedAttention",
            slot_interface: "MlpLayer",
            replacement_interface: "AttentionLayer",
        }
    );
    assert!(err.to_string().contains("`TinyMlp` (at `mlp`)"), "{err}");
}

#[test]
fn builder_mistakes_are_collected_and_reported_together() {
    let patcher = Patcher::new()
        .class_mapping_regex("Tiny(", fused())
        .filtered_weight_conversion_patterns(["[x"])
        .extra_weight_conversions([
            WeightConverter::new(["q.weight", "k.weight"], "qk.weight"),
            WeightConverter::new("a", "b").op(Concatenate::new(0)),
        ]);
    assert_eq!(patcher.errors().len(), 3, "{:?}", patcher.errors());
    let errors = patcher_errors(build(&patcher));
    assert!(matches!(
        errors.as_slice(),
        [
            PatcherError::InvalidClassPattern { .. },
            PatcherError::InvalidFilterPattern { .. },
            PatcherError::InvalidConversion { .. },
        ]
    ));
    let message = BuildError::Patcher(PatcherErrors(errors)).to_string();
    assert!(message.contains("has no operation"), "{message}");
}

#[test]
fn a_typed_replace_is_the_class_key_of_the_original() {
    let typed = Patcher::<B>::new().replace::<Attention<B>, FusedAttention<B>>();
    let named = Patcher::<B>::new().class_mapping("TinyAttention", fused());
    assert_eq!(typed.mapped_keys().collect::<Vec<_>>(), ["TinyAttention"]);
    assert_eq!(
        classes(&build(&typed).unwrap()),
        classes(&build(&named).unwrap())
    );
    let found = typed.replacement_for("TinyAttention").unwrap();
    assert_eq!(
        (found.class_name(), found.interface_name()),
        ("FusedAttention", "AttentionLayer")
    );
}
