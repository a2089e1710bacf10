//! Renaming patterns and a key from arbitrary text (`source \0 target \0 key`): build the
//! renaming, rename the key, reverse it, plan a load with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patcher_core::pattern::PatternSet;
use patcher_core::plan::{ConversionPlan, PlanOptions};
use patcher_core::{DType, TensorMeta, WeightRenaming, WeightTransform};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let key = parts
        .next()
        .unwrap_or("model.layers.0.mlp.experts.3.w1.weight");
    if let Ok(set) = PatternSet::longest_first([source, target]) {
        if let Some(found) = set.find(key) {
            let _ = found.replace(target);
        }
    }
    let Ok(renaming) = WeightRenaming::new(source, target) else {
        return;
    };
    let renamed = renaming.rename_source_key(key).map(|(k, _)| k);
    let transform: WeightTransform = renaming.into();
    let _ = transform.reverse();
    let meta = TensorMeta::new(DType::F32, [2usize]);
    let checkpoint = vec![(key.to_string(), meta)];
    let expected = [(renamed.unwrap_or_default(), vec![2usize])];
    let plan = ConversionPlan::new(
        &[transform],
        &checkpoint,
        &expected,
        &PlanOptions::default(),
    );
    let _ = plan.report().to_string();
});
