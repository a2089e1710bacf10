//! Construction rules, renaming and reversal of transforms.

use std::sync::Arc;

use super::*;
use crate::ops::{Chunk, Concatenate, Groups, MergeModulelist, OpContext, OpError};
use crate::pattern::PatternError;
use crate::tensor::{HostTensor, TensorMeta};

/// An identity op with a switch for many-to-many support and no reverse.
#[derive(Debug)]
struct Identity {
    many_to_many: bool,
}

impl ConversionOp for Identity {
    fn name(&self) -> String {
        "Identity".into()
    }

    fn supports_many_to_many(&self) -> bool {
        self.many_to_many
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        _: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        Ok(inputs)
    }

    fn convert<'a>(
        &self,
        inputs: Groups<HostTensor<'a>>,
        _: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        Ok(inputs)
    }
}

fn identity(many_to_many: bool) -> Vec<Arc<dyn ConversionOp>> {
    vec![Arc::new(Identity { many_to_many })]
}

#[test]
fn converter_needs_an_op() {
    let err = WeightConverter::try_new("a", "b", vec![]).unwrap_err();
    assert!(matches!(err, TransformError::NoOperations { .. }));
    assert!(err.to_string().contains("at least one op"), "{err}");
}

#[test]
fn many_to_many_needs_a_supporting_op() {
    let err = WeightConverter::try_new(["a", "b"], ["c", "d"], identity(false)).unwrap_err();
    assert!(matches!(err, TransformError::ManyToMany { .. }));
    assert!(WeightConverter::try_new(["a", "b"], ["c", "d"], identity(true)).is_ok());
    assert!(WeightConverter::try_new(["a", "b"], "c", identity(false)).is_ok());
    assert!(WeightConverter::try_new("a", ["c", "d"], identity(false)).is_ok());
}

#[test]
fn patterns_are_required_and_valid() {
    let err = WeightRenaming::new(Vec::<String>::new(), "b").unwrap_err();
    assert!(matches!(
        err,
        TransformError::Pattern(PatternError::Empty { .. })
    ));
    let err = WeightRenaming::new("layers.(", "b").unwrap_err();
    assert!(matches!(
        err,
        TransformError::Pattern(PatternError::InvalidRegex { .. })
    ));
}

#[test]
fn accepts_strings_arrays_and_vectors() {
    let owned: Vec<String> = vec!["a.weight".into(), "b.weight".into()];
    let c = WeightConverter::try_new(owned, "c.weight".to_string(), identity(false)).unwrap();
    assert_eq!(c.source_patterns(), ["a.weight", "b.weight"]);
    let c = WeightConverter::try_new(["a"], vec!["x", "y"], identity(false)).unwrap();
    assert_eq!(c.target_patterns(), ["x", "y"]);
}

#[test]
fn rename_replaces_the_matched_part_with_the_first_target() {
    let c = WeightConverter::try_new(
        "self_attn.qkv_proj.weight",
        ["self_attn.q_proj.weight", "self_attn.k_proj.weight"],
        vec![Arc::new(Chunk::new(0))],
    )
    .unwrap();
    let (renamed, pattern) = c
        .rename_source_key("model.layers.3.self_attn.qkv_proj.weight")
        .unwrap();
    assert_eq!(renamed, "model.layers.3.self_attn.q_proj.weight");
    assert_eq!(pattern, "self_attn.qkv_proj.weight");
    assert!(c.rename_source_key("model.layers.3.mlp.weight").is_none());
}

#[test]
fn replaces_at_the_match_not_the_first_equal_text() {
    // transformers replaces the first occurrence of the matched text (here inside
    // `weight_x`); the match itself is the last part.
    let r = WeightRenaming::new("weight", "w").unwrap();
    assert_eq!(
        r.rename_source_key("a.weight_x.weight").unwrap().0,
        "a.weight_x.w"
    );
}

#[test]
fn capture_group_and_backreference() {
    let r = WeightRenaming::new(
        r"^vit\.layers\.(\d+)\.input_layernorm\.",
        r"vit.layers.\1.layer_norm1.",
    )
    .unwrap();
    let (renamed, _) = r
        .rename_source_key("vit.layers.11.input_layernorm.weight")
        .unwrap();
    assert_eq!(renamed, "vit.layers.11.layer_norm1.weight");
}

#[test]
fn target_group_becomes_backreference_and_reverses() {
    let r = WeightRenaming::new(r"^(encoder|decoder)\.old", r"(encoder|decoder).new").unwrap();
    assert_eq!(r.target_patterns(), [r"\1.new"]);
    assert_eq!(
        r.rename_source_key("decoder.old.w").unwrap().0,
        "decoder.new.w"
    );
    let back = r.reverse().unwrap();
    assert_eq!(back.source_patterns(), ["^(encoder|decoder).new"]);
    assert_eq!(back.target_patterns(), [r"\1.old"]);
    assert_eq!(
        back.rename_source_key("decoder.new.w").unwrap().0,
        "decoder.old.w"
    );
}

#[test]
fn capture_group_errors() {
    let err = WeightRenaming::new(["a", "b"], ["(x)", "(y)"]).unwrap_err();
    assert!(
        matches!(err, TransformError::MultipleCaptureGroups { .. }),
        "{err}"
    );
    let err = WeightRenaming::new(r"a\1", "b").unwrap_err();
    assert!(
        matches!(err, TransformError::BackreferenceWithoutGroup { .. }),
        "{err}"
    );
    let err = WeightRenaming::new("layers", r"\1.x").unwrap_err();
    assert!(
        matches!(err, TransformError::MissingSourceGroup { .. }),
        "{err}"
    );
}

#[test]
fn anchors_of_paired_targets_propagate_to_sources() {
    let r = WeightRenaming::new("decoder", "^encoder").unwrap();
    assert_eq!(r.source_patterns(), ["^decoder"]);
    assert_eq!(r.target_patterns(), ["encoder"]);
    assert!(r.rename_source_key("x.decoder.w").is_none());
    assert_eq!(r.rename_source_key("decoder.w").unwrap().0, "encoder.w");
    // Unpaired lists (3 -> 1) are left alone.
    let c = WeightConverter::try_new(["a", "b", "c"], "^d", identity(false)).unwrap();
    assert_eq!(c.source_patterns(), ["a", "b", "c"]);
}

#[test]
fn reverse_swaps_patterns_and_reverses_ops() {
    let c = WeightConverter::try_new(
        ["experts.*.w1.weight", "experts.*.w3.weight"],
        "experts.gate_up_proj.weight",
        vec![
            Arc::new(MergeModulelist::new(0)),
            Arc::new(Concatenate::new(1)),
        ],
    )
    .unwrap()
    .with_scope_prefix("model");
    let back = c.reverse().unwrap();
    assert_eq!(back.source_patterns(), ["experts.gate_up_proj.weight"]);
    assert_eq!(
        back.target_patterns(),
        ["experts.*.w1.weight", "experts.*.w3.weight"]
    );
    let names: Vec<String> = back.ops().iter().map(|op| op.name()).collect();
    assert_eq!(names, ["Chunk(dim=1)", "SplitModulelist(dim=0)"]);
    assert_eq!(back.scope_prefix(), Some("model"));
    // Reversing twice gives the original patterns back.
    let again = back.reverse().unwrap();
    assert_eq!(again.source_patterns(), c.source_patterns());
    assert_eq!(again.target_patterns(), c.target_patterns());
}

#[test]
fn reverse_without_reverse_op_names_the_op() {
    let c = WeightConverter::try_new("a", "b", identity(false)).unwrap();
    let err = c.reverse().unwrap_err();
    match &err {
        TransformError::NotReversible { op, transform } => {
            assert_eq!(op, "Identity");
            assert!(transform.contains("WeightConverter"), "{transform}");
        }
        other => panic!("expected NotReversible, got {other:?}"),
    }
    let t: WeightTransform = c.into();
    assert!(t.reverse().is_err());
}

#[test]
fn scope_restricts_and_keeps_the_prefix() {
    let r = WeightRenaming::new("^old_q", "q")
        .unwrap()
        .with_scope_prefix("vision_model");
    assert_eq!(
        r.rename_source_key("vision_model.old_q.weight").unwrap().0,
        "vision_model.q.weight"
    );
    assert!(r.rename_source_key("language_model.old_q.weight").is_none());
    assert!(r.rename_source_key("old_q.weight").is_none());
    let r = r.with_base_model_prefix("model");
    assert_eq!(
        r.rename_source_key("model.vision_model.old_q.weight")
            .unwrap()
            .0,
        "model.vision_model.q.weight"
    );
}

#[test]
fn display_names_patterns_ops_and_scope() {
    let c = WeightConverter::try_new(["a", "b"], "c", vec![Arc::new(Concatenate::new(1))])
        .unwrap()
        .with_scope_prefix("enc");
    assert_eq!(
        c.to_string(),
        r#"WeightConverter(["a", "b"] -> "c"; Concatenate(dim=1); scope "enc")"#
    );
    let r: WeightTransform = WeightRenaming::new("x", "y").unwrap().into();
    assert_eq!(r.to_string(), r#"WeightRenaming("x" -> "y")"#);
}
