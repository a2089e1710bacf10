//! The base model prefix (add or strip) and the fallback to the original key.

use super::*;

fn model_keys_with_prefix(prefix: &str) -> Vec<(String, Vec<usize>)> {
    DUMMY_ROOT
        .iter()
        .filter(|(k, _)| k.starts_with("model."))
        .map(|(k, s)| (k.replacen("model.", prefix, 1), s.to_vec()))
        .collect()
}

fn zeros(model: &[(String, Vec<usize>)]) -> Dict {
    model
        .iter()
        .map(|(k, s)| (k.clone(), (s.clone(), vec![0.0; s.iter().product()])))
        .collect()
}

#[test]
fn adds_the_base_model_prefix() {
    // A `ForCausalLM`-like model (keys under `model.`) loading a base-model checkpoint.
    let model = model_keys_with_prefix("model.");
    let raw = zeros(&model_keys_with_prefix(""));
    let options = PlanOptions::default().base_model_prefix("model");
    let plan = ConversionPlan::new(&[], &metas(&raw), &model, &options);
    assert!(plan.is_clean(), "{}", plan.report());
    assert_eq!(plan.report().loaded, model.len());

    // Without the option nothing matches, and the report points at the near names.
    let plan = ConversionPlan::new(&[], &metas(&raw), &model, &PlanOptions::default());
    assert_eq!(plan.report().missing.len(), model.len());
    assert_eq!(plan.report().unexpected.len(), model.len());
    let text = plan.report().to_string();
    assert!(
        text.contains("model.layers.{0,1}.self_attn.q_proj.weight  (did you mean `layers.{0,1}.self_attn.q_proj.weight` from the checkpoint?)"),
        "{text}"
    );
}

#[test]
fn strips_the_base_model_prefix() {
    // A base model loading a `ForCausalLM` checkpoint.
    let model = model_keys_with_prefix("");
    let raw = zeros(&model_keys_with_prefix("model."));
    let options = PlanOptions::default().base_model_prefix("model");
    let plan = ConversionPlan::new(&[], &metas(&raw), &model, &options);
    assert!(plan.is_clean(), "{}", plan.report());
    let loaded = execute(&plan, &raw);
    assert!(loaded.contains_key("layers.0.self_attn.q_proj.weight"));
}

#[test]
fn prefix_goes_after_the_renames() {
    let raw = dict(&[("layers.0.mlp.w2.weight", &[2, 2], &[1.0, 2.0, 3.0, 4.0])]);
    let model = shapes(&[("model.layers.0.mlp.down_proj.weight", &[2, 2])]);
    let transforms: Vec<WeightTransform> =
        vec![WeightRenaming::new("mlp.w2.weight", "mlp.down_proj.weight")
            .unwrap()
            .into()];
    let options = PlanOptions::default().base_model_prefix("model");
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &options);
    assert!(plan.is_clean(), "{}", plan.report());
    assert_eq!(
        execute(&plan, &raw)["model.layers.0.mlp.down_proj.weight"].1,
        [1.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn falls_back_to_the_original_key() {
    // The model keeps experts separate, the default fused converter is still in the list: the
    // renamed key is not in the model but the original is, so the original loads.
    let raw = dict(&[
        (
            "model.layers.0.mlp.experts.0.gate_proj.weight",
            &[1, 2],
            &[1.0, 2.0],
        ),
        (
            "model.layers.0.mlp.experts.1.gate_proj.weight",
            &[1, 2],
            &[3.0, 4.0],
        ),
    ]);
    let model = shapes(&[
        ("model.layers.0.mlp.experts.0.gate_proj.weight", &[1, 2]),
        ("model.layers.0.mlp.experts.1.gate_proj.weight", &[1, 2]),
    ]);
    let transforms: Vec<WeightTransform> = vec![WeightConverter::try_new(
        "mlp.experts.*.gate_proj.weight",
        "mlp.experts.gate_proj",
        vec![op(MergeModulelist::new(0))],
    )
    .unwrap()
    .into()];
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
    assert!(plan.is_clean(), "{}", plan.report());
    assert!(plan.used_transforms().is_empty());
    assert_eq!(plan.report().unused_transforms[0].index, 0);
    assert_eq!(execute(&plan, &raw), raw);
    // Saving with the used transforms (none) keeps the names.
    let save = ConversionPlan::for_save(
        &plan.used_transforms_of(&transforms),
        &metas(&raw),
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(execute(&save, &raw), raw);
}

#[test]
fn a_save_removes_the_prefix_the_load_added() {
    // A checkpoint saved without the base model prefix, renamed on load (`mlp.w2` ->
    // `mlp.down_proj`) and given the prefix: the save gives back its keys, and a checkpoint
    // that had the prefix keeps it.
    let transforms: Vec<WeightTransform> =
        vec![WeightRenaming::new("mlp.w2.weight", "mlp.down_proj.weight")
            .unwrap()
            .into()];
    let params = dict(&[
        ("model.layers.0.mlp.down_proj.weight", &[2], &[1.0, 2.0]),
        ("model.norm.weight", &[2], &[3.0, 4.0]),
        ("lm_head.weight", &[2], &[5.0, 6.0]),
    ]);
    for (prefix, head) in [("", "lm_head.weight"), ("model.", "lm_head.weight")] {
        let source = [
            format!("{prefix}layers.0.mlp.w2.weight"),
            format!("{prefix}norm.weight"),
            head.to_string(),
        ];
        let options = PlanOptions::default()
            .base_model_prefix("model")
            .source_keys(source.clone());
        let save = ConversionPlan::for_save(&transforms, &metas(&params), &options).unwrap();
        let saved = execute(&save, &params);
        let mut expected = source.to_vec();
        expected.sort();
        assert_eq!(saved.keys().cloned().collect::<Vec<_>>(), expected);
        assert_eq!(saved[&source[0]].1, [1.0, 2.0]);
    }
}
