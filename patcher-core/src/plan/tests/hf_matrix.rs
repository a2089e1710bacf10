//! transformers' `test_moe_and_qkv_conversion` and its relatives.

use super::*;

#[test]
fn moe_and_qkv_conversion() {
    let raw = raw_moe_checkpoint();
    let transforms = moe_mapping(
        "model.layers.0.self_attn.qkv_proj.weight",
        [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.self_attn.v_proj.weight",
        ],
    );
    let plan = ConversionPlan::new(
        &transforms,
        &metas(&raw),
        &shapes(DUMMY_ROOT),
        &PlanOptions::default(),
    );
    let report = plan.report();
    // Natural order: `k_proj` < `q_proj` < `v_proj`.
    assert_eq!(
        report.missing,
        [
            "model.layers.1.self_attn.k_proj.weight",
            "model.layers.1.self_attn.q_proj.weight",
            "model.layers.1.self_attn.v_proj.weight",
        ]
    );
    assert_eq!(
        report.unexpected,
        ["model.layers.1.self_attn.qkv_proj.weight"]
    );
    assert!(report.mismatched.is_empty());
    assert!(report.conversion_errors.is_empty(), "{report}");
    assert!(report.unused_transforms.is_empty());

    let loaded = execute(&plan, &raw);
    for layer in 0..2 {
        assert_eq!(
            loaded[&format!("model.layers.{layer}.experts.gate_up_proj.weight")],
            (vec![2, 4, 2], cat_gate(&raw, layer))
        );
        let down = |e: usize| {
            raw[&format!("model.layers.{layer}.experts.{e}.w2.weight")]
                .1
                .clone()
        };
        assert_eq!(
            loaded[&format!("model.layers.{layer}.experts.down_proj.weight")],
            (vec![2, 2, 2], [down(0), down(1)].concat())
        );
    }
    for (i, p) in ["q", "k", "v"].into_iter().enumerate() {
        let qkv = &raw["model.layers.0.self_attn.qkv_proj.weight"].1;
        assert_eq!(
            loaded[&format!("model.layers.0.self_attn.{p}_proj.weight")],
            (vec![1, 2], qkv[i * 2..i * 2 + 2].to_vec())
        );
        assert!(!loaded.contains_key(&format!("model.layers.1.self_attn.{p}_proj.weight")));
    }
    assert_eq!(
        loaded["mlp.down_proj.weight"],
        (vec![2, 2], raw["mlp.w2.weight"].1.clone())
    );
    assert_eq!(loaded.len(), 8);
    assert_eq!(report.loaded, 8);
}

#[test]
fn moe_and_qkv_conversion_reversed() {
    let raw = raw_moe_checkpoint();
    let transforms = moe_mapping(
        "self_attn.qkv_proj.weight",
        [
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
        ],
    );
    let plan = ConversionPlan::new(
        &transforms,
        &metas(&raw),
        &shapes(DUMMY_ROOT),
        &PlanOptions::default(),
    );
    assert!(plan.is_clean(), "{}", plan.report());
    assert!(plan.report().unused_transforms.is_empty());
    let loaded = execute(&plan, &raw);
    assert_eq!(loaded.len(), DUMMY_ROOT.len());

    let used = plan.used_transforms_of(&transforms);
    assert_eq!(used.len(), 4);
    let save = ConversionPlan::for_save(&used, &metas(&loaded), &PlanOptions::default()).unwrap();
    assert!(save.is_clean(), "{}", save.report());
    assert_eq!(
        execute(&save, &loaded),
        raw,
        "saving gives back exactly the checkpoint"
    );
}

#[test]
fn groups_keep_sources_per_pattern_in_natural_order() {
    // 12 experts: lexicographic order would put expert 10 and 11 before 2.
    let mut entries = Vec::new();
    for e in (0..12).rev() {
        for (w, base) in [("up_proj", 100.0), ("gate_proj", 0.0)] {
            entries.push((
                format!("model.layers.0.mlp.experts.{e}.{w}.weight"),
                vec![1, 2],
                vec![base + e as f32, base + e as f32 + 0.5],
            ));
        }
    }
    let raw: Dict = entries.into_iter().map(|(k, s, v)| (k, (s, v))).collect();
    let transforms: Vec<WeightTransform> = vec![WeightConverter::try_new(
        [
            "mlp.experts.*.gate_proj.weight",
            "mlp.experts.*.up_proj.weight",
        ],
        "mlp.experts.gate_up_proj",
        vec![op(MergeModulelist::new(0)), op(Concatenate::new(1))],
    )
    .unwrap()
    .into()];
    let model = [(
        "model.layers.0.mlp.experts.gate_up_proj",
        vec![12usize, 2, 2],
    )];
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
    assert!(plan.is_clean(), "{}", plan.report());
    let group = &plan.groups()[0];
    let gate: Vec<&String> = group
        .sources
        .get("mlp.experts.*.gate_proj.weight")
        .unwrap()
        .iter()
        .collect();
    let experts: Vec<&str> = gate.iter().map(|k| k.split('.').nth(5).unwrap()).collect();
    assert_eq!(experts, (0..12).map(|e| e.to_string()).collect::<Vec<_>>());
    assert_eq!(
        group.sources.patterns().collect::<Vec<_>>(),
        [
            "mlp.experts.*.gate_proj.weight",
            "mlp.experts.*.up_proj.weight"
        ],
        "declared pattern order: gate first"
    );
    let loaded = execute(&plan, &raw);
    let (shape, values) = &loaded["model.layers.0.mlp.experts.gate_up_proj"];
    assert_eq!(shape, &[12, 2, 2]);
    for e in 0..12 {
        let e_f = e as f32;
        assert_eq!(
            values[e * 4..e * 4 + 4],
            [e_f, e_f + 0.5, 100.0 + e_f, 100.5 + e_f]
        );
    }
}

#[test]
fn scoped_renaming_does_not_leak_to_sibling_or_parent() {
    let raw = dict(&[
        ("vision_model.old_q.weight", &[1, 2], &[1.0, 2.0]),
        ("language_model.old_q.weight", &[1, 2], &[9.0, 9.0]),
        ("old_q.weight", &[1, 2], &[7.0, 7.0]),
    ]);
    let model = shapes(&[
        ("vision_model.q.weight", &[1, 2]),
        ("language_model.q.weight", &[1, 2]),
        ("q.weight", &[1, 2]),
    ]);
    let transforms: Vec<WeightTransform> = vec![WeightRenaming::new("^old_q", "q")
        .unwrap()
        .with_scope_prefix("vision_model")
        .into()];
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
    let report = plan.report();
    assert_eq!(
        report.unexpected,
        ["language_model.old_q.weight", "old_q.weight"]
    );
    assert_eq!(report.missing, ["language_model.q.weight", "q.weight"]);
    assert!(report.mismatched.is_empty() && report.conversion_errors.is_empty());
    let loaded = execute(&plan, &raw);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded["vision_model.q.weight"].1, [1.0, 2.0]);
}

#[test]
fn scoped_match_with_base_model_prefix() {
    let model = shapes(&[("model.q.weight", &[1, 2])]);
    let renaming = |scope: &str| -> Vec<WeightTransform> {
        vec![WeightRenaming::new("^old_q", "q")
            .unwrap()
            .with_scope_prefix(scope)
            .with_base_model_prefix("model")
            .into()]
    };
    let options = PlanOptions::default().base_model_prefix("model");

    // The checkpoint omits the base prefix: renamed, then the prefix is added.
    let raw = dict(&[("old_q.weight", &[1, 2], &[1.0, 2.0])]);
    let plan = ConversionPlan::new(&renaming(""), &metas(&raw), &model, &options);
    assert!(plan.is_clean(), "{}", plan.report());
    assert_eq!(execute(&plan, &raw)["model.q.weight"].1, [1.0, 2.0]);

    // Scope == base prefix: the round trip gives the same keys back.
    let raw = dict(&[("model.old_q.weight", &[1, 2], &[1.0, 2.0])]);
    let transforms = renaming("");
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &options);
    assert!(plan.is_clean(), "{}", plan.report());
    let loaded = execute(&plan, &raw);
    let save = ConversionPlan::for_save(
        &plan.used_transforms_of(&transforms),
        &metas(&loaded),
        &options,
    )
    .unwrap();
    assert_eq!(execute(&save, &loaded), raw);

    // A scope nested under the base prefix, checkpoint without the outer prefix.
    let model = shapes(&[("model.sub.q.weight", &[1, 2])]);
    let raw = dict(&[("sub.old_q.weight", &[1, 2], &[1.0, 2.0])]);
    let plan = ConversionPlan::new(&renaming("sub"), &metas(&raw), &model, &options);
    assert!(plan.is_clean(), "{}", plan.report());
    assert_eq!(execute(&plan, &raw)["model.sub.q.weight"].1, [1.0, 2.0]);
}

#[test]
fn interleaved_renaming_and_converter_round_trip() {
    let qkv: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let raw = dict(&[("decoder.attn.qkv_proj.weight", &[6, 4], &qkv)]);
    let model = shapes(&[
        ("encoder.attn.q_proj.weight", &[2, 4]),
        ("encoder.attn.k_proj.weight", &[2, 4]),
        ("encoder.attn.v_proj.weight", &[2, 4]),
    ]);
    let transforms: Vec<WeightTransform> = vec![
        WeightRenaming::new("^decoder", "encoder").unwrap().into(),
        WeightConverter::try_new(
            "^attn.qkv_proj.weight",
            [
                "attn.q_proj.weight",
                "attn.k_proj.weight",
                "attn.v_proj.weight",
            ],
            vec![op(Chunk::new(0))],
        )
        .unwrap()
        .with_scope_prefix("encoder")
        .into(),
    ];
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
    assert!(plan.is_clean(), "{}", plan.report());
    let loaded = execute(&plan, &raw);
    for (i, p) in ["q", "k", "v"].into_iter().enumerate() {
        assert_eq!(
            loaded[&format!("encoder.attn.{p}_proj.weight")].1,
            qkv[i * 8..i * 8 + 8]
        );
    }
    let save = ConversionPlan::for_save(
        &plan.used_transforms_of(&transforms),
        &metas(&loaded),
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(execute(&save, &loaded), raw);
}

#[test]
fn converter_group_outside_the_model_reports_its_outputs() {
    let raw = dict(&[("layers.3.qkv.weight", &[3, 2], &[0.0; 6])]);
    let transforms: Vec<WeightTransform> = vec![WeightConverter::try_new(
        "qkv.weight",
        ["q.weight", "k.weight", "v.weight"],
        vec![op(Chunk::new(0))],
    )
    .unwrap()
    .into()];
    let model = shapes(&[("layers.0.q.weight", &[1, 2])]);
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
    // transformers lists them as unexpected; they are not in the checkpoint, the converter made
    // them, and the report says so.
    assert!(plan.report().unexpected.is_empty());
    let outputs: Vec<&str> = plan
        .report()
        .unexpected_outputs
        .iter()
        .map(|o| o.key.as_str())
        .collect();
    assert_eq!(
        outputs,
        [
            "layers.3.k.weight",
            "layers.3.q.weight",
            "layers.3.v.weight"
        ]
    );
    assert!(plan.report().unexpected_outputs[0]
        .conversion
        .contains("Chunk(dim=0)"));
    assert!(!plan.is_clean());
    assert!(plan
        .report()
        .to_string()
        .contains("made by WeightConverter"));
    assert_eq!(plan.report().unused_transforms.len(), 1);
    assert!(plan.groups().is_empty());
}
