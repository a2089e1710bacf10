//! The save direction: reversed transforms, and keys already in checkpoint form.

use super::*;
use crate::ops::{Groups, OpContext, OpError};

#[test]
fn reverse_renaming_skips_keys_already_in_source_form() {
    // transformers #46650: the unanchored `encoder.layers -> layers` reversed turned
    // `encoder.layers.0` into `encoder.encoder.layers.0`.
    let transforms: Vec<WeightTransform> = vec![WeightRenaming::new("encoder.layers", "layers")
        .unwrap()
        .into()];
    let params = dict(&[
        ("layers.0.w", &[1], &[1.0]),
        ("encoder.layers.1.w", &[1], &[2.0]),
    ]);
    let save =
        ConversionPlan::for_save(&transforms, &metas(&params), &PlanOptions::default()).unwrap();
    let saved = execute(&save, &params);
    assert_eq!(
        saved.keys().collect::<Vec<_>>(),
        ["encoder.layers.0.w", "encoder.layers.1.w"]
    );
}

#[test]
fn reversed_converter_outputs_get_the_reversed_renamings() {
    let transforms: Vec<WeightTransform> = vec![
        WeightRenaming::new(".block_sparse_moe.", ".mlp.")
            .unwrap()
            .into(),
        WeightConverter::try_new(
            ".experts.*.w2.weight",
            ".experts.down_proj",
            vec![op(MergeModulelist::new(0))],
        )
        .unwrap()
        .into(),
    ];
    let params = dict(&[
        (
            "model.layers.0.mlp.experts.down_proj",
            &[2, 1, 2],
            &[1.0, 2.0, 3.0, 4.0],
        ),
        (
            "model.layers.0.mlp.gate.weight",
            &[2, 2],
            &[5.0, 6.0, 7.0, 8.0],
        ),
    ]);
    let save =
        ConversionPlan::for_save(&transforms, &metas(&params), &PlanOptions::default()).unwrap();
    let saved = execute(&save, &params);
    assert_eq!(
        saved,
        dict(&[
            (
                "model.layers.0.block_sparse_moe.experts.0.w2.weight",
                &[1, 2],
                &[1.0, 2.0]
            ),
            (
                "model.layers.0.block_sparse_moe.experts.1.w2.weight",
                &[1, 2],
                &[3.0, 4.0]
            ),
            (
                "model.layers.0.block_sparse_moe.gate.weight",
                &[2, 2],
                &[5.0, 6.0, 7.0, 8.0]
            ),
        ])
    );
    // And loading that back gives the params again.
    let model: Vec<(String, Vec<usize>)> = params
        .iter()
        .map(|(k, (s, _))| (k.clone(), s.clone()))
        .collect();
    let plan = ConversionPlan::new(&transforms, &metas(&saved), &model, &PlanOptions::default());
    assert!(plan.is_clean(), "{}", plan.report());
    assert_eq!(execute(&plan, &saved), params);
}

#[derive(Debug)]
struct OneWay;

impl ConversionOp for OneWay {
    fn name(&self) -> String {
        "OneWay".into()
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

#[test]
fn an_op_without_reverse_is_a_typed_error() {
    let transforms: Vec<WeightTransform> =
        vec![WeightConverter::try_new("a", "b", vec![op(OneWay)])
            .unwrap()
            .into()];
    let err = ConversionPlan::for_save(
        &transforms,
        &metas(&dict(&[("b", &[1], &[0.0])])),
        &PlanOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("`OneWay` has no reverse"), "{err}");
}

#[test]
fn two_params_saved_under_one_name_is_an_error() {
    let transforms: Vec<WeightTransform> = vec![WeightRenaming::new("^old", "new").unwrap().into()];
    let params = dict(&[("new.w", &[1], &[1.0]), ("old.w", &[1], &[2.0])]);
    let save =
        ConversionPlan::for_save(&transforms, &metas(&params), &PlanOptions::default()).unwrap();
    // `old.w` is already in checkpoint form (kept); `new.w` also becomes `old.w`.
    assert_eq!(
        save.report().conversion_errors.len(),
        1,
        "{}",
        save.report()
    );
    assert!(save.report().conversion_errors[0]
        .message
        .contains("both map to `old.w`"));
}
