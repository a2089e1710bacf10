//! transformers' `TestWeightGlobMatching`, plus the regex rules of the engine.

use super::*;
use crate::plan::rename_source_key;
use crate::{WeightRenaming, WeightTransform};

fn globs() -> PatternSet {
    PatternSet::new([
        "model.layers.*.mlp.gate_up_proj.weight",
        "model.layers.*.self_attn.q_proj.weight",
        "embed_tokens.weight",
    ])
    .unwrap()
}

/// transformers' `_match_glob`: the pattern that matched, if any.
fn match_glob<'s>(set: &'s PatternSet, key: &str) -> Option<&'s str> {
    set.find(key).map(|m| set.patterns()[m.index].as_str())
}

#[test]
fn exact_match() {
    assert_eq!(
        match_glob(&globs(), "embed_tokens.weight"),
        Some("embed_tokens.weight")
    );
}

#[test]
fn digits_only_star_accepts_digits() {
    let set = globs();
    assert_eq!(
        match_glob(&set, "model.layers.0.mlp.gate_up_proj.weight"),
        Some("model.layers.*.mlp.gate_up_proj.weight")
    );
    assert_eq!(
        match_glob(&set, "model.layers.12.self_attn.q_proj.weight"),
        Some("model.layers.*.self_attn.q_proj.weight")
    );
}

#[test]
fn anychar_star_accepts_nondigits() {
    let set = globs();
    for key in [
        "model.layers.a.mlp.gate_up_proj.weight",
        "model.layers.00x.mlp.gate_up_proj.weight",
    ] {
        assert_eq!(
            match_glob(&set, key),
            Some("model.layers.*.mlp.gate_up_proj.weight")
        );
    }
}

#[test]
fn no_match() {
    assert_eq!(
        match_glob(&globs(), "model.layers.0.mlp.up_proj.weight"),
        None
    );
}

#[test]
fn leftmost_alternative_wins_for_overlapping_patterns() {
    let set = PatternSet::new([
        "model.layers.*.mlp.*.weight",
        "model.layers.0.mlp.gate_up_proj.weight",
    ])
    .unwrap();
    assert_eq!(
        match_glob(&set, "model.layers.0.mlp.gate_up_proj.weight"),
        Some("model.layers.*.mlp.*.weight")
    );
}

#[test]
fn multiple_patterns_same_prefix() {
    let set = PatternSet::new([
        "model.layers.*.self_attn.q_proj.weight",
        "model.layers.*.self_attn.k_proj.weight",
        "model.layers.*.self_attn.v_proj.weight",
    ])
    .unwrap();
    for p in ["q", "k", "v"] {
        assert_eq!(
            match_glob(&set, &format!("model.layers.3.self_attn.{p}_proj.weight")),
            Some(format!("model.layers.*.self_attn.{p}_proj.weight").as_str())
        );
    }
}

#[test]
fn anchor_full_match_only() {
    // Search, not full match: a trailing `.bar` still matches.
    assert!(match_glob(&globs(), "model.layers.0.mlp.gate_up_proj.weight.bar").is_some());
}

#[test]
fn large_batch_performance_smoke() {
    let patterns: Vec<String> = (0..200)
        .map(|i| format!("model.layers.*.mlp.block{i}.weight"))
        .collect();
    let set = PatternSet::new(patterns).unwrap();
    assert_eq!(
        match_glob(&set, "model.layers.123.mlp.block57.weight"),
        Some("model.layers.*.mlp.block57.weight")
    );
}

#[test]
fn sub_key_rewrites_targets() {
    let renamings: Vec<WeightTransform> = vec![
        WeightRenaming::new(
            "block_sparse_moe.experts.*.w1.weight",
            "mlp.experts.gate_up_proj",
        )
        .unwrap()
        .into(),
        WeightRenaming::new(
            "block_sparse_moe.experts.*.w2.weight",
            "mlp.experts.down_proj",
        )
        .unwrap()
        .into(),
        WeightRenaming::new("model.language_model.*", "language_model")
            .unwrap()
            .into(),
    ];
    let rename = |key: &str| rename_source_key(&renamings, key).0;
    assert_eq!(
        rename("foo.block_sparse_moe.experts.3.w1.weight"),
        "foo.mlp.experts.gate_up_proj"
    );
    assert_eq!(
        rename("foo.block_sparse_moe.experts.3.w2.weight"),
        "foo.mlp.experts.down_proj"
    );
    assert_eq!(
        rename("model.language_model.lm_head.weight"),
        "language_model"
    );
}

#[test]
fn sub_key_no_match_returns_original() {
    let renamings: Vec<WeightTransform> = vec![WeightRenaming::new(
        "block_sparse_moe.experts.*.w1.weight",
        "*.mlp.experts.gate_up_proj",
    )
    .unwrap()
    .into()];
    assert_eq!(
        rename_source_key(&renamings, "unrelated.key"),
        ("unrelated.key".to_string(), None)
    );
}

#[test]
fn name_boundary_after_trailing_word_character() {
    let set = PatternSet::new(["q_proj.weight"]).unwrap();
    assert!(set.find("layers.0.q_proj.weight_scale_inv").is_none());
    assert!(set.find("layers.0.q_proj.weight").is_some());
    // The boundary check is not part of the matched text.
    assert_eq!(
        set.find("layers.0.q_proj.weight.x").unwrap().as_str(),
        "q_proj.weight"
    );
    // A pattern ending in a non-word character gets no boundary.
    let set = PatternSet::new(["q_proj."]).unwrap();
    assert!(set.find("q_proj.weight").is_some());
}

#[test]
fn boundary_after_an_escape_that_is_not_a_word_character() {
    // `\x2e` is `.`: "not followed by a word character" is no word boundary here.
    let set = PatternSet::new([r"ab\x2e"]).unwrap();
    assert!(set.find("ab.x").is_none());
    assert_eq!(set.find("ab..").unwrap().as_str(), "ab.");
    assert_eq!(set.find("zab.").unwrap().as_str(), "ab.");
    let set = PatternSet::new([r"w\d"]).unwrap();
    assert!(set.find("w12").is_none());
    assert_eq!(set.find("w1.").unwrap().as_str(), "w1");
}

#[test]
fn boundary_binds_to_the_last_alternative_only() {
    // Like `(?P<g0>foo|bar(?!\w))` in Python.
    let set = PatternSet::new(["foo|bar"]).unwrap();
    assert_eq!(set.find("foox").unwrap().as_str(), "foo");
    assert!(set.find("barx").is_none());
    assert_eq!(set.find("bar.x").unwrap().as_str(), "bar");
}

#[test]
fn longest_first_inside_a_transform() {
    let declared = PatternSet::new(["weight", "weight.absmax"]).unwrap();
    let longest = PatternSet::longest_first(["weight", "weight.absmax"]).unwrap();
    let key = "layer.weight.absmax";
    assert_eq!(declared.find(key).unwrap().index, 0);
    let m = longest.find(key).unwrap();
    assert_eq!(m.index, 1, "the index is the declared one");
    assert_eq!(m.as_str(), "weight.absmax");
}

#[test]
fn star_dot_is_any_characters_then_a_dot() {
    let set = PatternSet::new(["mlp.experts.*.gate_proj.weight"]).unwrap();
    let m = set
        .find("model.layers.0.mlp.experts.12.gate_proj.weight")
        .unwrap();
    assert_eq!(m.as_str(), "mlp.experts.12.gate_proj.weight");
    assert_eq!(
        m.replace("mlp.experts.gate_up_proj"),
        "model.layers.0.mlp.experts.gate_up_proj"
    );
}

#[test]
fn first_group_is_captured() {
    let set = PatternSet::new([r"^vit\.layers\.(\d+)\.ln"]).unwrap();
    let m = set.find("vit.layers.11.ln.weight").unwrap();
    assert_eq!(m.first_group, Some("11"));
    assert_eq!(set.capture_count(0), 1);
}

#[test]
fn invalid_patterns_are_typed_errors() {
    for bad in [r"^model(?!\.visual)", "layers.(", "a{2,1}"] {
        match PatternSet::new([bad]) {
            Err(PatternError::InvalidRegex { pattern, message }) => {
                assert_eq!(pattern, bad);
                assert!(!message.is_empty());
            }
            other => panic!("{bad}: expected an invalid-regex error, got {other:?}"),
        }
    }
    let err = PatternSet::new(Vec::<String>::new()).unwrap_err();
    assert!(matches!(err, PatternError::Empty { .. }));
    let err = PatternSet::new([r"(?P<__kp_branch0>x)"]).unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
}

#[test]
fn natural_order_with_twelve_experts() {
    let mut keys: Vec<String> = (0..12)
        .rev()
        .flat_map(|e| {
            [
                format!("model.layers.0.mlp.experts.{e}.up_proj.weight"),
                format!("model.layers.0.mlp.experts.{e}.gate_proj.weight"),
            ]
        })
        .collect();
    natural_key_order(&mut keys);
    let experts: Vec<&str> = keys.iter().map(|k| k.split('.').nth(5).unwrap()).collect();
    let expected: Vec<String> = (0..12)
        .flat_map(|e| [e.to_string(), e.to_string()])
        .collect();
    assert_eq!(experts, expected);
    assert!(
        keys[0].ends_with("0.gate_proj.weight"),
        "names sort as text: {}",
        keys[0]
    );
    assert!(keys[20].contains(".10."));
}

#[test]
fn natural_order_is_total() {
    use std::cmp::Ordering::*;
    assert_eq!(natural_key_cmp("a.2", "a.10"), Less);
    assert_eq!(natural_key_cmp("a.0", "a.b"), Less, "numbers before names");
    assert_eq!(natural_key_cmp("a", "a.0"), Less, "prefix first");
    assert_eq!(
        natural_key_cmp("a.01", "a.1"),
        Less,
        "tie broken by the text"
    );
    assert_eq!(
        natural_key_cmp("a.99999999999999999999999", "a.100000000000000000000000"),
        Less
    );
}
