//! Forward parity against transformers 5.23 (fp32, eager attention, eager experts) on the
//! committed fixtures, for the original build and every patched variant, with weights assigned
//! by the test-only helper in `common/` (the real loader is tested at the workspace level).
//! Target: max abs difference of the logits and of every hidden state <= 1e-4.

use crate::common::parity::assert_parity;
use crate::common::{assign_all, fixtures, input_ids, read_reference};
use burn::prelude::Backend;
use patcher_burn::list_slots;
use patcher_models::llama::{LlamaConfig, LlamaForCausalLm};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;

const TOLERANCE: f32 = 1e-4;

fn qwen2_moe<B: Backend>(dir: &str, patch: Patch, device: &B::Device) {
    let path = fixtures().join(dir);
    let config = Qwen2MoeConfig::from_file(path.join("config.json")).unwrap();
    let patcher = patch.patcher::<B, _>(&config).unwrap();
    let (fused_qkv, sequential_experts) = (patch.has_fused_qkv(), patch.has_sequential_experts());
    let model = Qwen2MoeForCausalLm::<B>::with_patcher(&config, &patcher, device).unwrap();
    let slots = list_slots(&model);
    let count = |class: &str| slots.iter().filter(|s| s.original_class == class).count();
    let (layers, sparse) = (config.core.num_hidden_layers, config.sparse_layers());
    // Every class is a slot: per layer the layer, its attention and two norms, and its MLP: a
    // MoE block with its router, experts and shared expert (a `Qwen2MoeMLP`), or a dense
    // `Qwen2MoeMLP`; then the final norm; the fused attention's own linears too.
    for (class, expected) in [
        ("Qwen2MoeDecoderLayer", layers),
        ("Qwen2MoeAttention", layers),
        ("Qwen2MoeSparseMoeBlock", sparse),
        ("Qwen2MoeTopKRouter", sparse),
        ("Qwen2MoeExperts", sparse),
        ("Qwen2MoeMLP", layers),
    ] {
        assert_eq!(count(class), expected, "{class}");
    }
    assert_eq!(count("Qwen2MoeRMSNorm"), 2 * layers + 1);
    assert_eq!(count("Linear"), if fused_qkv { 2 * layers } else { 0 });
    for slot in &slots {
        let expected = match (slot.original_class.as_str(), fused_qkv, sequential_experts) {
            ("Qwen2MoeAttention", true, _) => "FusedQKVAttention",
            ("Qwen2MoeExperts", _, true) => "SequentialExperts",
            (original, _, _) => original,
        };
        assert_eq!(slot.class, expected, "{}", slot.path);
    }
    let model = assign_all(model, &path, device);
    let reference = read_reference(&path);
    let out = model.forward_with_hidden_states(input_ids::<B>(&reference, device));
    let logits = model.forward(input_ids::<B>(&reference, device));
    assert_eq!(
        logits.to_data(),
        out.logits.to_data(),
        "forward == forward_with_hidden_states"
    );
    let label = format!("{dir} patch={patch}");
    assert_parity(&label, &out, &reference, TOLERANCE);
}

fn llama<B: Backend>(dir: &str, fused_qkv: bool, device: &B::Device) {
    let path = fixtures().join(dir);
    let config = LlamaConfig::from_file(path.join("config.json")).unwrap();
    let model = if fused_qkv {
        let patcher = Patch::fused_qkv().patcher::<B, _>(&config).unwrap();
        LlamaForCausalLm::<B>::with_patcher(&config, &patcher, device).unwrap()
    } else {
        LlamaForCausalLm::<B>::new(&config, device)
    };
    let slots = list_slots(&model);
    let of =
        |class: &str| -> Vec<_> { slots.iter().filter(|s| s.original_class == class).collect() };
    let layers = config.core.num_hidden_layers;
    let attention = of("LlamaAttention");
    assert_eq!(attention.len(), layers);
    assert!(attention.iter().all(|s| s.replaced == fused_qkv));
    assert_eq!(of("LlamaDecoderLayer").len(), layers);
    assert_eq!(of("LlamaMLP").len(), layers);
    assert_eq!(of("LlamaRMSNorm").len(), 2 * layers + 1);
    // Every linear is a slot: q, k, v, o (or qkv, o) and the MLP's three per layer, and lm_head.
    let linears = of("Linear");
    let per_layer = if fused_qkv { 5 } else { 7 };
    assert_eq!(linears.len(), per_layer * layers + 1);
    assert!(linears.iter().all(|s| !s.replaced && s.class == "Linear"));
    assert!(slots
        .iter()
        .all(|s| s.replaced == (s.original_class == "LlamaAttention" && fused_qkv)));
    let model = assign_all(model, &path, device);
    let reference = read_reference(&path);
    let out = model.forward_with_hidden_states(input_ids::<B>(&reference, device));
    let label = format!("{dir} fused_qkv={fused_qkv}");
    assert_parity(&label, &out, &reference, TOLERANCE);
}

/// The same checks on one backend.
macro_rules! parity_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn qwen2_moe_original() {
            qwen2_moe::<B>("qwen2_moe", Patch::NONE, &$device);
        }

        #[test]
        fn qwen2_moe_fused_qkv() {
            qwen2_moe::<B>("qwen2_moe", Patch::fused_qkv(), &$device);
        }

        #[test]
        fn qwen2_moe_sequential_experts() {
            qwen2_moe::<B>("qwen2_moe", Patch::sequential_experts(), &$device);
        }

        #[test]
        fn qwen2_moe_seed_patch() {
            qwen2_moe::<B>("qwen2_moe", Patch::seed(), &$device);
        }

        #[test]
        fn qwen2_moe_sharded() {
            qwen2_moe::<B>("qwen2_moe_sharded", Patch::NONE, &$device);
            qwen2_moe::<B>("qwen2_moe_sharded", Patch::seed(), &$device);
        }

        #[test]
        fn qwen2_moe_bf16_weights() {
            qwen2_moe::<B>("qwen2_moe_bf16", Patch::NONE, &$device);
            qwen2_moe::<B>("qwen2_moe_bf16", Patch::seed(), &$device);
        }

        #[test]
        fn qwen2_moe_dense_layers() {
            qwen2_moe::<B>("qwen2_moe_dense", Patch::NONE, &$device);
            qwen2_moe::<B>("qwen2_moe_dense", Patch::seed(), &$device);
        }

        #[test]
        fn llama_original() {
            llama::<B>("llama", false, &$device);
        }

        #[test]
        fn llama_fused_qkv() {
            llama::<B>("llama", true, &$device);
        }

        #[test]
        fn llama_sharded() {
            llama::<B>("llama_sharded", false, &$device);
            llama::<B>("llama_sharded", true, &$device);
        }
    };
}

crate::common::on_every_backend!(parity_tests);
