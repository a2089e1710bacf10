//! Qwen2-MoE's default weight conversions, as transformers 5.23's `conversion_mapping.py`
//! declares them for `qwen2_moe`: the checkpoint's per-expert linears are merged into the fused
//! `Qwen2MoeExperts` parameters.

use patcher_core::ops::{Concatenate, MergeModulelist};
use patcher_core::{WeightConverter, WeightTransform};

/// transformers' `mapping["qwen2_moe"]`:
/// - `mlp.experts.*.gate_proj.weight` + `mlp.experts.*.up_proj.weight` ->
///   `mlp.experts.gate_up_proj` by `MergeModulelist(dim=0)` then `Concatenate(dim=1)`
///   (`[E, I, H]` + `[E, I, H]` -> `[E, 2I, H]`);
/// - `mlp.experts.*.down_proj.weight` -> `mlp.experts.down_proj` by `MergeModulelist(dim=0)`.
pub fn default_weight_conversions() -> Vec<WeightTransform> {
    let gate_up = WeightConverter::new(
        [
            "mlp.experts.*.gate_proj.weight",
            "mlp.experts.*.up_proj.weight",
        ],
        "mlp.experts.gate_up_proj",
    )
    .op(MergeModulelist::new(0))
    .op(Concatenate::new(1));
    let down = WeightConverter::new("mlp.experts.*.down_proj.weight", "mlp.experts.down_proj")
        .op(MergeModulelist::new(0));
    vec![gate_up.into(), down.into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_the_fused_parameters() {
        let table = default_weight_conversions();
        assert_eq!(table.len(), 2);
        assert!(table.iter().all(WeightTransform::is_converter));
        assert!(table.iter().all(|t| t.validate().is_ok()));
        let key = "model.layers.1.mlp.experts.3.up_proj.weight";
        let (renamed, _) = table[0].rename_source_key(key).unwrap();
        assert_eq!(renamed, "model.layers.1.mlp.experts.gate_up_proj");
        let key = "model.layers.0.mlp.experts.0.down_proj.weight";
        let (renamed, _) = table[1].rename_source_key(key).unwrap();
        assert_eq!(renamed, "model.layers.0.mlp.experts.down_proj");
        assert!(table[0]
            .rename_source_key("model.layers.0.mlp.shared_expert.up_proj.weight")
            .is_none());
    }
}
