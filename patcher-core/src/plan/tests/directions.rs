//! Conversions in both directions: wildcard targets, converters run backwards, pinned ops,
//! renamings whose pattern matches their own output, ignored keys, dtypes.

use super::*;
use crate::ops::{Chunk, SplitModulelist};
use crate::plan::TargetStatus;

/// transformers 5's fused experts of one layer: `gate_up_proj [E, 2I, H]`, `down_proj [E, H, I]`.
fn fused_checkpoint() -> Dict {
    let gate_up: Vec<f32> = (0..2 * 4 * 2).map(|v| v as f32).collect();
    let down: Vec<f32> = (0..2 * 2 * 2).map(|v| 100.0 + v as f32).collect();
    dict(&[
        (
            "model.layers.0.mlp.experts.gate_up_proj",
            &[2, 4, 2],
            &gate_up,
        ),
        ("model.layers.0.mlp.experts.down_proj", &[2, 2, 2], &down),
    ])
}

/// A model with one linear per expert (transformers' per-expert checkpoint names).
fn per_expert_model() -> Vec<(String, Vec<usize>)> {
    let mut model = Vec::new();
    for e in 0..2 {
        for name in ["gate_proj", "up_proj"] {
            model.push((
                format!("model.layers.0.mlp.experts.{e}.{name}.weight"),
                vec![2, 2],
            ));
        }
        model.push((
            format!("model.layers.0.mlp.experts.{e}.down_proj.weight"),
            vec![2, 2],
        ));
    }
    model
}

/// Expert `e`'s gate and up rows of `fused_checkpoint`: gate_up is `[E, 2I, H]` with I = H = 2.
fn expert_rows(e: usize, up: bool) -> Vec<f32> {
    let start = e * 8 + if up { 4 } else { 0 };
    (start..start + 4).map(|v| v as f32).collect()
}

#[test]
fn wildcard_targets_expand_from_the_ops_outputs() {
    // One-to-many: `*` in the targets is filled in by SplitModulelist, as in transformers.
    let transforms: Vec<WeightTransform> = vec![
        WeightConverter::try_new(
            "mlp.experts.gate_up_proj",
            [
                "mlp.experts.*.gate_proj.weight",
                "mlp.experts.*.up_proj.weight",
            ],
            vec![op(Chunk::new(1)), op(SplitModulelist::new(0))],
        )
        .unwrap()
        .into(),
        WeightConverter::try_new(
            "mlp.experts.down_proj",
            "mlp.experts.*.down_proj.weight",
            vec![op(SplitModulelist::new(0))],
        )
        .unwrap()
        .into(),
    ];
    let raw = fused_checkpoint();
    let model = per_expert_model();
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
    assert!(plan.is_clean(), "{}", plan.report());
    assert_eq!(plan.report().loaded, 6);
    let loaded = execute(&plan, &raw);
    assert_eq!(
        loaded["model.layers.0.mlp.experts.1.up_proj.weight"].1,
        expert_rows(1, true)
    );
    assert_eq!(
        loaded["model.layers.0.mlp.experts.0.down_proj.weight"].1,
        [100.0, 101.0, 102.0, 103.0]
    );
}

#[test]
fn the_checkpoints_fused_layout_runs_the_models_converter_backwards() {
    let raw = fused_checkpoint();
    let model = per_expert_model();
    // A patched model filtered the fusing converters out; the model still declares them.
    let options = PlanOptions::default().reversible(fused_experts_conversions());
    let plan = ConversionPlan::new(&[], &metas(&raw), &model, &options);
    assert!(plan.is_clean(), "{}", plan.report());
    assert_eq!(plan.report().reversed.len(), 2);
    assert!(plan.groups().iter().all(|g| g.backwards));
    assert!(plan.report().to_string().contains("run in reverse"));
    let loaded = execute(&plan, &raw);
    assert_eq!(loaded.len(), 6);
    assert_eq!(
        loaded["model.layers.0.mlp.experts.0.gate_proj.weight"].1,
        expert_rows(0, false)
    );
    assert_eq!(
        loaded["model.layers.0.mlp.experts.1.up_proj.weight"].1,
        expert_rows(1, true)
    );

    // Saving writes the loaded (fused) layout back, bit for bit.
    let used = plan.used_conversions();
    assert_eq!(used.len(), 2);
    let save = ConversionPlan::for_save(used, &metas(&loaded), &PlanOptions::default()).unwrap();
    assert_eq!(execute(&save, &loaded), raw);

    // Without the model's conversions the keys are plainly unexpected.
    let plan = ConversionPlan::new(&[], &metas(&raw), &model, &PlanOptions::default());
    assert_eq!(plan.report().unexpected.len(), 2);
    assert_eq!(plan.report().missing.len(), 6);
}

#[test]
fn a_per_expert_checkpoint_still_loads_forward_when_backwards_is_possible() {
    let mut raw = Dict::new();
    for (k, (s, v)) in execute(
        &ConversionPlan::new(
            &[],
            &metas(&fused_checkpoint()),
            &per_expert_model(),
            &PlanOptions::default().reversible(fused_experts_conversions()),
        ),
        &fused_checkpoint(),
    ) {
        raw.insert(k, (s, v));
    }
    let fused_model = shapes(&[
        ("model.layers.0.mlp.experts.gate_up_proj", &[2, 4, 2]),
        ("model.layers.0.mlp.experts.down_proj", &[2, 2, 2]),
    ]);
    let options = PlanOptions::default().reversible(fused_experts_conversions());
    let plan = ConversionPlan::new(
        &fused_experts_conversions(),
        &metas(&raw),
        &fused_model,
        &options,
    );
    assert!(plan.is_clean(), "{}", plan.report());
    assert!(plan.report().reversed.is_empty());
    assert_eq!(execute(&plan, &raw), fused_checkpoint());
}

#[test]
fn a_plain_concatenate_under_gqa_saves_q_k_v_at_their_own_sizes() {
    // q has 4 rows, k and v 2 each: the plain reverse (an even Chunk) would write three
    // tensors of 8/3 rows. The plan pins the sizes it saw.
    let transforms: Vec<WeightTransform> = vec![WeightConverter::try_new(
        ["q_proj.weight", "k_proj.weight", "v_proj.weight"],
        "qkv_proj.weight",
        vec![op(Concatenate::new(0))],
    )
    .unwrap()
    .into()];
    let q: Vec<f32> = (0..8).map(|v| v as f32).collect();
    let raw = dict(&[
        ("attn.q_proj.weight", &[4, 2], &q),
        ("attn.k_proj.weight", &[2, 2], &[10.0, 11.0, 12.0, 13.0]),
        ("attn.v_proj.weight", &[2, 2], &[20.0, 21.0, 22.0, 23.0]),
    ]);
    let model = shapes(&[("attn.qkv_proj.weight", &[8, 2])]);
    let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
    assert!(plan.is_clean(), "{}", plan.report());
    let used = plan.used_conversions();
    assert_eq!(
        used[0].ops()[0].name(),
        "Concatenate(dim=0, sizes=[4, 2, 2])"
    );
    let loaded = execute(&plan, &raw);
    let save = ConversionPlan::for_save(used, &metas(&loaded), &PlanOptions::default()).unwrap();
    assert_eq!(execute(&save, &loaded), raw);
}

#[test]
fn a_renaming_that_matches_its_own_output_reverses_with_the_loaded_keys() {
    for (source, target, on_disk, in_memory) in [
        (
            r"\.experts\.(\d+)\.",
            r".experts.experts.\1.",
            "mlp.experts.3.w",
            "mlp.experts.experts.3.w",
        ),
        (
            "attention.self.",
            "attention.self_attn.",
            "layer.0.attention.self.query.weight",
            "layer.0.attention.self_attn.query.weight",
        ),
    ] {
        let transforms: Vec<WeightTransform> =
            vec![WeightRenaming::new(source, target).unwrap().into()];
        let raw = dict(&[(on_disk, &[1], &[1.0])]);
        let model = shapes(&[(in_memory, &[1])]);
        let plan = ConversionPlan::new(&transforms, &metas(&raw), &model, &PlanOptions::default());
        assert!(plan.is_clean(), "{}", plan.report());
        let loaded = execute(&plan, &raw);
        // Without the loaded keys, the #46650 guard keeps the in-memory name (wrong).
        let blind = ConversionPlan::for_save(
            plan.used_conversions(),
            &metas(&loaded),
            &PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(execute(&blind, &loaded).keys().next().unwrap(), in_memory);
        // With them, the renaming is undone.
        let options = PlanOptions::default().source_keys(raw.keys().cloned());
        let save =
            ConversionPlan::for_save(plan.used_conversions(), &metas(&loaded), &options).unwrap();
        assert_eq!(execute(&save, &loaded), raw, "{source}");
    }
}

#[test]
fn ignored_keys_are_reported_as_ignored_not_unexpected() {
    let raw = dict(&[
        ("embeddings.position_ids", &[1], &[0.0]),
        ("layers.0.rotary_emb.inv_freq", &[1], &[0.0]),
        ("layers.0.extra", &[1], &[0.0]),
        ("layers.0.w", &[1], &[1.0]),
    ]);
    let model = shapes(&[("layers.0.w", &[1])]);
    let options = PlanOptions::default()
        .ignore_unexpected([r"\.position_ids$", r"rotary_emb\.inv_freq$"])
        .unwrap();
    let plan = ConversionPlan::new(&[], &metas(&raw), &model, &options);
    assert_eq!(
        plan.report().ignored,
        ["embeddings.position_ids", "layers.0.rotary_emb.inv_freq"]
    );
    assert_eq!(plan.report().unexpected, ["layers.0.extra"]);
    assert!(!plan.is_clean());
    // Named, not only counted.
    let text = plan.report().to_string();
    assert!(
        text.contains(
            "2 checkpoint keys ignored (declared as not parameters):\n  embeddings.position_ids\n  \
             layers.0.rotary_emb.inv_freq\n"
        ),
        "{text}"
    );
    // One key: named, and in the singular.
    let options = PlanOptions::default()
        .ignore_unexpected([r"\.position_ids$"])
        .unwrap();
    let raw = dict(&[
        ("embeddings.position_ids", &[1], &[0.0]),
        ("layers.0.w", &[1], &[1.0]),
    ]);
    let plan = ConversionPlan::new(&[], &metas(&raw), &model, &options);
    let text = plan.report().to_string();
    assert!(
        text.contains(
            "1 checkpoint key ignored (declared as not a parameter):\n  embeddings.position_ids\n"
        ),
        "{text}"
    );
    assert!(matches!(
        PlanOptions::default().ignore_unexpected([""]),
        Err(crate::pattern::PatternError::Empty { .. })
    ));
    assert!(matches!(
        PlanOptions::default().ignore_unexpected(["("]),
        Err(crate::pattern::PatternError::InvalidRegex { .. })
    ));
}

#[test]
fn mixed_float_sources_stack_once_cast_to_the_model_dtype() {
    let f32_meta = TensorMeta::new(DType::F32, vec![2, 2]);
    let f16_meta = TensorMeta::new(DType::F16, vec![2, 2]);
    let checkpoint = vec![
        (
            "mlp.experts.0.down_proj.weight".to_string(),
            f32_meta.clone(),
        ),
        ("mlp.experts.1.down_proj.weight".to_string(), f16_meta),
        ("mlp.experts.2.down_proj.weight".to_string(), f32_meta),
    ];
    let model = vec![(
        "mlp.experts.down_proj".to_string(),
        TensorMeta::new(DType::F32, vec![3, 2, 2]),
    )];
    let transforms = &fused_experts_conversions()[1..];
    let plan = ConversionPlan::new(transforms, &checkpoint, &model, &PlanOptions::default());
    assert_eq!(
        plan.report().conversion_errors.len(),
        1,
        "{}",
        plan.report()
    );
    let options = PlanOptions::default().float_dtype(DType::F32);
    let plan = ConversionPlan::new(transforms, &checkpoint, &model, &options);
    assert!(plan.is_clean(), "{}", plan.report());
}

#[test]
fn a_tensor_of_the_wrong_kind_is_a_dtype_mismatch() {
    let checkpoint = vec![
        (
            "position_ids".to_string(),
            TensorMeta::new(DType::F32, vec![4]),
        ),
        ("w".to_string(), TensorMeta::new(DType::F32, vec![2])),
    ];
    let model = vec![
        (
            "position_ids".to_string(),
            TensorMeta::new(DType::I64, vec![4]),
        ),
        ("w".to_string(), TensorMeta::new(DType::F32, vec![2])),
    ];
    let plan = ConversionPlan::new(&[], &checkpoint, &model, &PlanOptions::default());
    assert!(!plan.is_clean());
    assert!(plan.report().missing.is_empty());
    let mismatch = &plan.report().dtype_mismatches[0];
    assert_eq!(mismatch.name, "position_ids");
    assert_eq!(
        (mismatch.checkpoint_dtype, mismatch.model_dtype),
        (DType::F32, DType::I64)
    );
    assert!(plan.report().to_string().contains("Dtype mismatch"));
    // Only `w` is written.
    let written: Vec<&str> = plan
        .groups()
        .iter()
        .flat_map(|g| g.ready_targets().map(|t| t.key.as_str()))
        .collect();
    assert_eq!(written, ["w"]);
    assert!(plan
        .groups()
        .iter()
        .all(|g| g.targets.iter().all(|t| t.status == TargetStatus::Ready)));
}

/// Loads `raw` into `model` through `transforms` (the plan must be clean), checks that saving
/// with the conversions the load used writes `raw` back, and returns what was loaded and the
/// plan's used conversions.
fn load_and_save_back(
    transforms: &[WeightTransform],
    raw: &Dict,
    model: &[(String, Vec<usize>)],
) -> (Dict, Vec<WeightTransform>) {
    let plan = ConversionPlan::new(transforms, &metas(raw), model, &PlanOptions::default());
    assert!(plan.is_clean(), "{}", plan.report());
    let loaded = execute(&plan, raw);
    let used = plan.used_conversions().to_vec();
    let save = ConversionPlan::for_save(&used, &metas(&loaded), &PlanOptions::default()).unwrap();
    assert_eq!(&execute(&save, &loaded), raw);
    (loaded, used)
}

#[test]
fn prefix_change_loads_and_saves_back_and_is_dropped_when_unused() {
    use crate::PrefixChange;
    let transforms: Vec<WeightTransform> =
        vec![PrefixChange::add("language_model", "model").unwrap().into()];
    let raw = dict(&[
        ("model.layers.0.w", &[1], &[1.0]),
        ("lm_head.weight", &[1], &[2.0]),
    ]);
    let model = shapes(&[
        ("model.language_model.layers.0.w", &[1]),
        ("lm_head.weight", &[1]),
    ]);
    let (loaded, used) = load_and_save_back(&transforms, &raw, &model);
    assert_eq!(used.len(), 1);
    // A checkpoint already in the model's layout: the change never applies and is not used, so
    // saving does not remove the part.
    let (_, used) = load_and_save_back(&transforms, &loaded, &model);
    assert!(used.is_empty());
    assert!(matches!(
        PrefixChange::new(Some("a"), Some("b"), None),
        Err(crate::TransformError::PrefixChange { .. })
    ));
}

#[test]
fn group_rename_is_switched_on_by_its_guard() {
    use crate::GroupWeightRename;
    let group = GroupWeightRename::new(["norm0.", "norm1."], ["norm1.", "norm2."]).unwrap();
    let transforms: Vec<WeightTransform> = vec![group.into()];
    let model = shapes(&[("a.norm1.w", &[1]), ("a.norm2.w", &[1])]);
    // An old checkpoint (norm0, norm1): both renamed, and saved back.
    let old = dict(&[("a.norm0.w", &[1], &[1.0]), ("a.norm1.w", &[1], &[2.0])]);
    let (loaded, used) = load_and_save_back(&transforms, &old, &model);
    assert_eq!(loaded["a.norm2.w"].1, [2.0]);
    assert_eq!(used.len(), 1);
    // An already converted checkpoint (norm1, norm2, no guard): nothing is renamed again.
    let (again, used) = load_and_save_back(&transforms, &loaded, &model);
    assert_eq!(again, loaded);
    assert!(used.is_empty());
    assert!(matches!(
        GroupWeightRename::new(["a"], ["b", "c"]),
        Err(crate::TransformError::GroupLength { sources: 1, targets: 2 })
    ));
}
