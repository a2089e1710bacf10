//! The seed scenario: Qwen2-MoE with sequential experts and fused q/k/v, through the weight half
//! of the seed's `Patcher`.

use super::*;
use crate::WeightPatch;

/// The weight half of the seed's patcher (its class half is `patcher-burn`'s).
fn seed_patcher(filter: bool) -> WeightPatch {
    let mut patch = WeightPatch::new();
    if filter {
        patch = patch.filtered_weight_conversion_patterns([".gate_up_proj", ".down_proj"]);
    }
    patch.extra_weight_conversions(["weight", "bias"].map(|kind| {
        WeightConverter::new(
            [
                format!("q_proj.{kind}"),
                format!("k_proj.{kind}"),
                format!("v_proj.{kind}"),
            ],
            format!("qkv_proj.{kind}"),
        )
        .op(Concatenate::new(0))
    }))
}

/// Two layers, three experts; q/k/v of 2 rows and a bias each.
fn checkpoint() -> Dict {
    let mut d = Dict::new();
    let mut next = 0.0;
    let mut put = |key: String, shape: &[usize]| {
        let n: usize = shape.iter().product();
        let values = (0..n).map(|i| next + i as f32).collect();
        next += 100.0;
        d.insert(key, (shape.to_vec(), values));
    };
    for l in 0..2 {
        for p in ["q", "k", "v"] {
            put(
                format!("model.layers.{l}.self_attn.{p}_proj.weight"),
                &[2, 4],
            );
            put(format!("model.layers.{l}.self_attn.{p}_proj.bias"), &[2]);
        }
        for e in 0..3 {
            for w in ["gate_proj", "up_proj", "down_proj"] {
                put(
                    format!("model.layers.{l}.mlp.experts.{e}.{w}.weight"),
                    &[4, 4],
                );
            }
        }
    }
    d
}

/// The patched model: per-expert linears, fused q/k/v.
fn patched_model() -> Vec<(String, Vec<usize>)> {
    let mut model = Vec::new();
    for l in 0..2 {
        model.push((
            format!("model.layers.{l}.self_attn.qkv_proj.weight"),
            vec![6, 4],
        ));
        model.push((format!("model.layers.{l}.self_attn.qkv_proj.bias"), vec![6]));
        for e in 0..3 {
            for w in ["gate_proj", "up_proj", "down_proj"] {
                model.push((
                    format!("model.layers.{l}.mlp.experts.{e}.{w}.weight"),
                    vec![4, 4],
                ));
            }
        }
    }
    model
}

#[test]
fn seed_patch_loads_cleanly_and_saves_back() {
    let raw = checkpoint();
    let transforms = seed_patcher(true).update_weight_conversions(fused_experts_conversions());
    assert_eq!(
        transforms.len(),
        2,
        "expert converters dropped, q/k/v extras kept"
    );
    let plan = ConversionPlan::new(
        &transforms,
        &metas(&raw),
        &patched_model(),
        &PlanOptions::default(),
    );
    assert!(plan.is_clean(), "{}", plan.report());
    assert!(plan.report().unused_transforms.is_empty());

    let loaded = execute(&plan, &raw);
    for l in 0..2 {
        let part = |p: &str, kind: &str| {
            raw[&format!("model.layers.{l}.self_attn.{p}_proj.{kind}")]
                .1
                .clone()
        };
        for kind in ["weight", "bias"] {
            let fused = &loaded[&format!("model.layers.{l}.self_attn.qkv_proj.{kind}")].1;
            assert_eq!(
                fused,
                &[part("q", kind), part("k", kind), part("v", kind)].concat()
            );
        }
        let key = format!("model.layers.{l}.mlp.experts.2.down_proj.weight");
        assert_eq!(loaded[&key], raw[&key], "experts load as they are");
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
fn without_the_filter_the_fallback_still_loads_the_experts() {
    // transformers 5.3+: the fused converter renames expert keys to `gate_up_proj`, which the
    // patched model lacks, so each key falls back to its original name.
    let raw = checkpoint();
    let transforms = seed_patcher(false).update_weight_conversions(fused_experts_conversions());
    assert_eq!(transforms.len(), 4);
    let plan = ConversionPlan::new(
        &transforms,
        &metas(&raw),
        &patched_model(),
        &PlanOptions::default(),
    );
    assert!(plan.is_clean(), "{}", plan.report());
    let unused: Vec<usize> = plan
        .report()
        .unused_transforms
        .iter()
        .map(|t| t.index)
        .collect();
    assert_eq!(unused, [2, 3], "the expert converters loaded nothing");
    assert_eq!(plan.used_transforms_of(&transforms).len(), 2);
}
