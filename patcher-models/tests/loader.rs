//! The models through burn-patcher's real loader (`from_pretrained`): parity with transformers
//! for the original and every patched variant, saving a patched model back in the checkpoint's
//! layout and reloading it unpatched, and a wrong patch failing with the report.

mod common;

use std::path::PathBuf;

use burn::prelude::Backend;
use common::{fixtures, input_ids, parity, read_reference};
use patcher_burn::{list_slots, save_pretrained, LoadError, LoadOptions};
use patcher_core::{Checkpoint, Patcher};
use patcher_models::llama::{LlamaAttentionInterface, LlamaConfig, LlamaForCausalLM};
use patcher_models::qwen2_moe::{Qwen2MoeAttentionInterface, Qwen2MoeConfig, Qwen2MoeForCausalLM};
use patcher_models::replacements::{llama_fused_qkv_patcher, qwen2_moe_patcher, FusedQKVAttention};
use patcher_models::PretrainedError;

const TOLERANCE: f32 = 1e-4;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("patcher-models-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn qwen2_moe<B: Backend>(dir: &str, fused_qkv: bool, sequential_experts: bool, device: &B::Device) {
    let path = fixtures().join(dir);
    let config = Qwen2MoeConfig::from_file(path.join("config.json")).unwrap();
    let patcher = qwen2_moe_patcher::<B>(&config, fused_qkv, sequential_experts);
    let loaded =
        Qwen2MoeForCausalLM::<B>::from_pretrained(&path, &patcher, device, &LoadOptions::default())
            .unwrap();
    assert!(loaded.report.missing.is_empty() && loaded.report.unexpected.is_empty());
    let replaced = list_slots(&loaded.model)
        .iter()
        .filter(|s| s.replaced)
        .count();
    assert_eq!(
        replaced,
        2 * (fused_qkv as usize + sequential_experts as usize)
    );

    let reference = read_reference(&path);
    let out = loaded
        .model
        .forward_with_hidden_states(input_ids::<B>(&reference, device));
    let p = parity(
        &out.logits,
        out.hidden_states.as_deref().unwrap(),
        &reference,
    );
    println!(
        "loader {dir} fused_qkv={fused_qkv} sequential_experts={sequential_experts}: logits {:.3e}, hidden states {:?}",
        p.logits, p.hidden_states
    );
    assert!(p.max() <= TOLERANCE, "max abs diff {}", p.max());

    // Save the (patched) model back in the checkpoint's layout; it reloads unpatched.
    let out_dir = scratch(&format!("{dir}-{fused_qkv}-{sequential_experts}"));
    std::fs::copy(path.join("config.json"), out_dir.join("config.json")).unwrap();
    save_pretrained(
        &loaded.model,
        out_dir.join("model.safetensors"),
        &loaded.conversions,
        Some("model"),
    )
    .unwrap();
    assert_same_tensors(&path, &out_dir);
    let reloaded = Qwen2MoeForCausalLM::<B>::from_pretrained(
        &out_dir,
        &Patcher::new(),
        device,
        &LoadOptions::default(),
    )
    .unwrap();
    let again = reloaded.model.forward(input_ids::<B>(&reference, device));
    let diff = common::max_abs_diff(
        &again,
        &common::HostF32 {
            shape: out.logits.dims().to_vec(),
            data: out.logits.to_data().iter::<f32>().collect(),
        },
    );
    println!("  saved and reloaded unpatched: logits differ by {diff:.3e}");
    assert!(diff <= 1e-6, "reloaded logits differ by {diff}");
    std::fs::remove_dir_all(out_dir).ok();
}

/// Every tensor of the checkpoint in `saved` equals the one in `original` bit for bit (same
/// keys, shapes and bytes; a bf16 original is compared after its exact upcast to f32, the
/// model's dtype, which saving keeps).
fn assert_same_tensors(original: &std::path::Path, saved: &std::path::Path) {
    let original = Checkpoint::open(original).unwrap();
    let saved = Checkpoint::open(saved).unwrap();
    let keys: Vec<&str> = saved.keys().collect();
    assert_eq!(keys, original.keys().collect::<Vec<_>>());
    for key in keys {
        let (a, b) = (original.get(key).unwrap(), saved.get(key).unwrap());
        assert_eq!(a.shape(), b.shape(), "{key}");
        if a.dtype() == b.dtype() {
            assert!(
                a.bytes() == b.bytes(),
                "{key} differs from the original checkpoint"
            );
        } else {
            let (a, b) = (
                a.host().to_f32_vec().unwrap(),
                b.host().to_f32_vec().unwrap(),
            );
            let same_bits = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same_bits, "{key} differs from the original checkpoint");
        }
    }
}

fn llama<B: Backend>(dir: &str, fused_qkv: bool, device: &B::Device) {
    let path = fixtures().join(dir);
    let config = LlamaConfig::from_file(path.join("config.json")).unwrap();
    let patcher = if fused_qkv {
        llama_fused_qkv_patcher::<B>(&config)
    } else {
        Patcher::new()
    };
    let loaded =
        LlamaForCausalLM::<B>::from_pretrained(&path, &patcher, device, &LoadOptions::default())
            .unwrap();
    let reference = read_reference(&path);
    let out = loaded
        .model
        .forward_with_hidden_states(input_ids::<B>(&reference, device));
    let p = parity(
        &out.logits,
        out.hidden_states.as_deref().unwrap(),
        &reference,
    );
    println!(
        "loader {dir} fused_qkv={fused_qkv}: logits {:.3e}, hidden states {:?}",
        p.logits, p.hidden_states
    );
    assert!(p.max() <= TOLERANCE, "max abs diff {}", p.max());

    // Saved back in the checkpoint's layout: the same tensors, bit for bit.
    let out_dir = scratch(&format!("{dir}-{fused_qkv}"));
    save_pretrained(
        &loaded.model,
        out_dir.join("model.safetensors"),
        &loaded.conversions,
        Some("model"),
    )
    .unwrap();
    assert_same_tensors(&path, &out_dir);
    std::fs::remove_dir_all(out_dir).ok();
}

fn wrong_patch_fails<B: Backend>(device: &B::Device) {
    // Fused QKV attention without the q/k/v concatenations: `qkv_proj` has no source, and the
    // checkpoint's q/k/v keys have no parameter.
    let patcher = Patcher::<B>::new()
        .class_mapping(
            "Qwen2MoeAttention",
            patcher_burn::replacement::<FusedQKVAttention<B>, dyn Qwen2MoeAttentionInterface<B>>(),
        )
        .unwrap();
    let err = Qwen2MoeForCausalLM::<B>::from_pretrained(
        fixtures().join("qwen2_moe"),
        &patcher,
        device,
        &LoadOptions::default(),
    )
    .unwrap_err();
    let message = err.to_string();
    println!("{message}");
    match err {
        PretrainedError::Load(LoadError::Incomplete { report }) => {
            assert!(report
                .missing
                .iter()
                .any(|m| m.ends_with("self_attn.qkv_proj.weight")));
            assert!(report
                .unexpected
                .iter()
                .any(|u| u.ends_with("self_attn.q_proj.weight")));
        }
        other => panic!("expected an incomplete load, got {other}"),
    }
    // A converter whose target does not exist (a typo): the load fails with the report, and the
    // report suggests the parameter that was meant.
    let typo = patcher_core::WeightConverter::new(
        ["q_proj.weight", "k_proj.weight", "v_proj.weight"],
        "qkv_projj.weight",
        vec![std::sync::Arc::new(patcher_core::ops::Concatenate::new(0))],
    )
    .unwrap();
    let patcher = patcher.extra_weight_conversions([typo]);
    let err = Qwen2MoeForCausalLM::<B>::from_pretrained(
        fixtures().join("qwen2_moe"),
        &patcher,
        device,
        &LoadOptions::default(),
    )
    .unwrap_err();
    let message = err.to_string();
    println!("{message}");
    let PretrainedError::Load(LoadError::Incomplete { report }) = err else {
        panic!("expected an incomplete load, got {message}");
    };
    assert!(report
        .unexpected
        .iter()
        .any(|u| u.ends_with("self_attn.qkv_projj.weight")));
    assert!(report
        .missing
        .iter()
        .any(|m| m.ends_with("self_attn.qkv_proj.weight")));
    assert!(message.contains("qkv_projj"), "{message}");
    assert!(message.contains("did you mean"), "{message}");

    // The same for Llama.
    let patcher = Patcher::<B>::new()
        .class_mapping(
            "LlamaAttention",
            patcher_burn::replacement::<FusedQKVAttention<B>, dyn LlamaAttentionInterface<B>>(),
        )
        .unwrap();
    let err = LlamaForCausalLM::<B>::from_pretrained(
        fixtures().join("llama"),
        &patcher,
        device,
        &LoadOptions::default(),
    );
    assert!(matches!(
        err,
        Err(PretrainedError::Load(LoadError::Incomplete { .. }))
    ));
}

macro_rules! loader_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn qwen2_moe_variants() {
            for (fused, sequential) in [(false, false), (true, false), (false, true), (true, true)]
            {
                qwen2_moe::<B>("qwen2_moe", fused, sequential, &$device);
            }
        }

        #[test]
        fn qwen2_moe_sharded_and_bf16() {
            qwen2_moe::<B>("qwen2_moe_sharded", true, true, &$device);
            qwen2_moe::<B>("qwen2_moe_bf16", true, true, &$device);
        }

        #[test]
        fn llama_variants() {
            llama::<B>("llama", false, &$device);
            llama::<B>("llama", true, &$device);
            llama::<B>("llama_sharded", true, &$device);
        }

        #[test]
        fn wrong_patch_is_refused_with_the_report() {
            wrong_patch_fails::<B>(&$device);
        }
    };
}

mod ndarray {
    loader_tests!(burn::backend::NdArray<f32>, Default::default());
}

#[cfg(feature = "wgpu")]
mod wgpu {
    loader_tests!(
        burn::backend::Wgpu,
        burn::backend::wgpu::WgpuDevice::default()
    );
}
