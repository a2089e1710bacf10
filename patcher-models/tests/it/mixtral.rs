//! Mixtral through the real loader (`LoadFamily::load`), from the hub layout
//! (per-expert `block_sparse_moe.experts.{e}.w1/w2/w3`, hub-style config) and from transformers
//! 5's fused layout (v5 config): parity with transformers on the logits and every hidden state,
//! unpatched and with each seed-style patch, and each load saved back byte for byte.

use crate::common::parity::assert_parity;
use crate::common::{
    assert_saves_back_byte_for_byte, fixtures, input_ids, read_reference, MOE_PATCHES,
};
use burn::prelude::Backend;
use patcher_burn::list_slots;
use patcher_models::mixtral::{MixtralConfig, MixtralForCausalLm};
use patcher_models::prelude::*;
use patcher_models::replacements::Patch;

const TOLERANCE: f32 = 1e-4;

fn mixtral<B: Backend>(dir: &str, patch: Patch, device: &B::Device) {
    let path = fixtures().join(dir);
    let config = MixtralConfig::from_file(path.join("config.json")).unwrap();
    let patcher = patch.patcher::<B, _>(&config).unwrap();
    let loaded = Pretrained::<B>::from_path(&path)
        .patcher(&patcher)
        .load::<MixtralForCausalLm<B>>(device)
        .unwrap();
    let report = &loaded.report;
    assert!(report.is_clean() && report.ignored.is_empty(), "{report}");
    let slots = list_slots(&loaded.model);
    let replaced: Vec<_> = slots.iter().filter(|s| s.replaced).collect();
    let per_layer = patch.presets().count();
    assert_eq!(replaced.len(), per_layer * config.core.num_hidden_layers);
    for slot in replaced {
        let expected = match slot.original_class.as_str() {
            "MixtralAttention" => "FusedQKVAttention",
            "MixtralExperts" => "SequentialExperts",
            other => panic!("{other} replaced at {}", slot.path),
        };
        assert_eq!(slot.class, expected, "{}", slot.path);
    }

    let reference = read_reference(&path);
    let out = loaded
        .model
        .forward_with_hidden_states(input_ids::<B>(&reference, device));
    let label = format!("{dir} patch={patch}");
    assert_parity(&label, &out, &reference, TOLERANCE);

    // Saved back in the layout it was loaded from: the very file transformers wrote.
    let name = format!("{dir}-{patch}");
    assert_saves_back_byte_for_byte(&loaded, &path, &name, &label);
}

#[test]
fn hub_and_v5_configs_parse_alike() {
    let hub = MixtralConfig::from_file(fixtures().join("mixtral/config.json")).unwrap();
    let v5 = MixtralConfig::from_file(fixtures().join("mixtral_fused/config.json")).unwrap();
    assert_eq!(hub, v5);
    assert_eq!(hub.core.rope.rope_theta, 5000.0);
    assert_eq!((hub.sliding_window, hub.num_local_experts), (Some(5), 4));
    // transformers' MixtralConfig defaults, and `num_experts` as an alias.
    let defaults = MixtralConfig::from_json_str(r#"{"num_experts": 4}"#).unwrap();
    assert_eq!(defaults.core.rope.rope_theta, 1e6);
    assert_eq!(
        (
            defaults.core.rms_norm_eps,
            defaults.core.num_key_value_heads
        ),
        (1e-5, 8)
    );
    assert_eq!(
        (defaults.num_local_experts, defaults.num_experts_per_tok),
        (4, 2)
    );
    assert_eq!(defaults.sliding_window, None);
    let bad = MixtralConfig::from_json_str(r#"{"num_experts_per_tok": 9}"#);
    assert!(bad.is_err());
    let wrong = MixtralConfig::from_json_str(r#"{"model_type": "qwen2_moe"}"#);
    assert!(wrong.is_err());
}

macro_rules! mixtral_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn hub_layout_variants() {
            for patch in MOE_PATCHES {
                mixtral::<B>("mixtral", patch, &$device);
            }
        }

        #[test]
        fn fused_layout_variants() {
            for patch in MOE_PATCHES {
                mixtral::<B>("mixtral_fused", patch, &$device);
            }
        }
    };
}

crate::common::on_every_backend!(mixtral_tests);
