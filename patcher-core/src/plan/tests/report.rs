//! Mismatches, conversion errors, conflicts and the rendering of the report.

use super::*;

#[test]
fn a_missing_expert_is_a_shape_mismatch() {
    let raw = dict(&[
        ("layers.0.experts.0.w2.weight", &[2, 2], &[0.0; 4]),
        ("layers.0.experts.1.w2.weight", &[2, 2], &[0.0; 4]),
    ]);
    let transforms: Vec<WeightTransform> = vec![WeightConverter::try_new(
        "experts.*.w2.weight",
        "experts.down_proj",
        vec![op(MergeModulelist::new(0))],
    )
    .unwrap()
    .into()];
    let model = shapes(&[("layers.0.experts.down_proj", &[3, 2, 2])]);
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
    let report = plan.report();
    assert_eq!(
        report.mismatched,
        [ShapeMismatch {
            name: "layers.0.experts.down_proj".into(),
            checkpoint_shape: vec![2, 2, 2],
            model_shape: vec![3, 2, 2],
        }]
    );
    assert!(
        report.missing.is_empty(),
        "a mismatched key is not also missing"
    );
    assert!(plan.groups().is_empty(), "nothing to write");
    assert!(!plan.is_clean());
    assert!(report
        .to_string()
        .contains("layers.0.experts.down_proj: checkpoint [2, 2, 2] vs model [3, 2, 2]"));
}

#[test]
fn an_op_that_cannot_convert_is_a_conversion_error() {
    let raw = dict(&[("attn.qkv.weight", &[4, 2], &[0.0; 8])]);
    let transforms: Vec<WeightTransform> = vec![WeightConverter::try_new(
        "qkv.weight",
        ["q.weight", "k.weight", "v.weight"],
        vec![op(Chunk::new(0))],
    )
    .unwrap()
    .into()];
    let model = shapes(&[
        ("attn.q.weight", &[1, 2]),
        ("attn.k.weight", &[1, 2]),
        ("attn.v.weight", &[1, 2]),
    ]);
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
    let report = plan.report();
    assert_eq!(report.conversion_errors.len(), 1);
    let error = &report.conversion_errors[0];
    assert_eq!(error.target, "attn.q.weight");
    assert_eq!(error.op.as_deref(), Some("Chunk(dim=0)"));
    assert_eq!(
        report.missing.len(),
        3,
        "the targets of a failed group stay missing"
    );
    assert!(plan.groups().is_empty());
}

#[test]
fn two_keys_for_one_parameter_is_a_conflict() {
    let raw = dict(&[
        ("model.norm.weight", &[2], &[1.0, 2.0]),
        ("norm.weight", &[2], &[3.0, 4.0]),
    ]);
    let model = shapes(&[("model.norm.weight", &[2])]);
    let options = PlanOptions::default().base_model_prefix("model");
    let plan = ConversionPlan::new(&[], &metas(&raw), &model, &options);
    let report = plan.report();
    assert_eq!(report.conversion_errors.len(), 1, "{report}");
    assert!(report.conversion_errors[0]
        .message
        .contains("both map to `model.norm.weight`"));
    assert_eq!(report.missing, ["model.norm.weight"]);
}

#[test]
fn renders_collapsed_ranges_and_suggestions() {
    let mut checkpoint = Vec::new();
    let mut model = Vec::new();
    for layer in 0..24 {
        model.push((
            format!("model.layers.{layer}.mlp.experts.gate_up_proj"),
            vec![4, 8, 2],
        ));
        model.push((
            format!("model.layers.{layer}.self_attn.q_proj.weight"),
            vec![2, 2],
        ));
        checkpoint.push((
            format!("model.layers.{layer}.self_attn.q_proj.weight"),
            TensorMeta::new(DType::F32, [2, 2]),
        ));
    }
    for layer in [0, 2, 5] {
        checkpoint.push((
            format!("model.layers.{layer}.self_attn.q_proj.weight_scale_inv"),
            TensorMeta::new(DType::F32, [1, 1]),
        ));
    }
    model.push(("model.norm.weight".into(), vec![2]));
    checkpoint.push(("model.nrom.weight".into(), TensorMeta::new(DType::F32, [2])));
    let plan = ConversionPlan::new(&[], &checkpoint, &model, &PlanOptions::default());
    let text = plan.report().to_string();
    let expected = [
        "24 loaded, 4 unexpected, 25 missing, 0 mismatched, 0 conversion errors, 0 unused conversions",
        "Unexpected (in the checkpoint, not in the model):",
        "  model.layers.{0,2,5}.self_attn.q_proj.weight_scale_inv",
        "  model.nrom.weight",
        "Missing (left as initialized):",
        "  model.layers.{0..23}.mlp.experts.gate_up_proj",
        "  model.norm.weight  (did you mean `model.nrom.weight` from the checkpoint?)",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
    assert_eq!(
        plan.report().suggestion_for("model.norm.weight").as_deref(),
        Some("model.nrom.weight")
    );
}

#[test]
fn a_clean_report_is_one_line() {
    let raw = dict(&[("w", &[1], &[1.0])]);
    let plan = ConversionPlan::new(
        &[],
        &metas(&raw),
        &shapes(&[("w", &[1])]),
        &PlanOptions::default(),
    );
    assert!(plan.is_clean());
    assert_eq!(
        plan.report().to_string(),
        "1 loaded, 0 unexpected, 0 missing, 0 mismatched, 0 conversion errors, 0 unused conversions\n"
    );
}

/// An op whose `convert` gives another shape than its `infer` (a bug the plan must catch).
#[derive(Debug)]
struct Liar;

impl ConversionOp for Liar {
    fn name(&self) -> String {
        "Liar".into()
    }
    fn infer(
        &self,
        _: crate::ops::Groups<TensorMeta>,
        ctx: &crate::ops::OpContext<'_>,
    ) -> Result<crate::ops::Groups<TensorMeta>, crate::ops::OpError> {
        Ok(crate::ops::Groups::new().with(
            &ctx.target_patterns[0],
            vec![TensorMeta::new(DType::F32, [2])],
        ))
    }
    fn convert<'a>(
        &self,
        _: crate::ops::Groups<HostTensor<'a>>,
        ctx: &crate::ops::OpContext<'_>,
    ) -> Result<crate::ops::Groups<HostTensor<'a>>, crate::ops::OpError> {
        Ok(crate::ops::Groups::new().with(&ctx.target_patterns[0], vec![tensor(&[3], &[0.0; 3])]))
    }
}

#[test]
fn execute_checks_convert_against_infer() {
    let raw = dict(&[("a.x", &[2], &[1.0, 2.0])]);
    let transforms: Vec<WeightTransform> = vec![WeightConverter::try_new("x", "y", vec![op(Liar)])
        .unwrap()
        .into()];
    let plan = ConversionPlan::new(
        &transforms,
        &metas(&raw),
        &shapes(&[("a.y", &[2])]),
        &PlanOptions::default(),
    );
    assert!(plan.is_clean(), "{}", plan.report());
    let group = &plan.groups()[0];
    let err = group
        .execute(group.sources.clone().map(|_| tensor(&[2], &[1.0, 2.0])))
        .unwrap_err();
    assert!(err.message.contains("disagree"), "{err}");
}
