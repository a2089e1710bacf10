//! Saving a LoRA-patched Llama as PEFT does, checked against PEFT itself (the `llama_lora`
//! fixture: an adapter PEFT saved, and PEFT's logits with it): the adapter loads and gives
//! PEFT's logits, saves back as PEFT wrote it, the base saves byte for byte, and the merged
//! model saves as a stock checkpoint with the same logits.

use std::path::{Path, PathBuf};

use crate::common::{fixtures, input_ids, max_abs_diff, read_reference};
use crate::roundtrip::{assert_round_trip, raw};
use burn::backend::NdArray;
use patcher_burn::{LoadOptions, Loaded, SaveOptions};
use patcher_models::llama::{LlamaForCausalLm, LINEAR_NAMES};
use patcher_models::prelude::*;
use patcher_models::replacements::{
    load_lora_adapter, lora_patcher, save_lora_adapter, save_lora_base, save_lora_merged,
    PeftAdapterConfig, PeftAdapterError, ADAPTER_CONFIG, ADAPTER_WEIGHTS, LORA_PARAMETERS,
};

type B = NdArray<f32>;

/// transformers' parity bound for the fixtures' logits.
const TOLERANCE: f32 = 1e-4;

fn adapter_dir() -> PathBuf {
    fixtures().join("llama_lora")
}

/// The llama fixture in a rank-`R` LoRA model, adapters at their initial values.
fn lora<const R: usize>() -> Loaded<LlamaForCausalLm<B>> {
    let options = LoadOptions::default().ignore_missing([LORA_PARAMETERS]);
    let patcher = lora_patcher::<B, R>(&LINEAR_NAMES).unwrap();
    Pretrained::<B>::from_path(fixtures().join("llama"))
        .patcher(&patcher)
        .options(options.clone())
        .load::<LlamaForCausalLm<B>>(&Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The rank-4 LoRA model with PEFT's adapter loaded.
fn with_peft_adapter() -> Loaded<LlamaForCausalLm<B>> {
    let mut loaded = lora::<4>();
    loaded.model =
        load_lora_adapter(&loaded.model, adapter_dir()).unwrap_or_else(|e| panic!("{e}"));
    loaded
}

/// Max |logits - PEFT's logits| of `model` on the fixture's input.
fn peft_gap(model: &LlamaForCausalLm<B>) -> f32 {
    let reference = read_reference(&adapter_dir());
    let ids = input_ids::<B>(&reference, &Default::default());
    max_abs_diff(&model.forward(ids), &reference.logits)
}

#[test]
fn a_peft_adapter_gives_peft_logits() {
    let loaded = with_peft_adapter();
    let gap = peft_gap(&loaded.model);
    assert!(gap <= TOLERANCE, "max |logits - PEFT| = {gap}");
    // Without the adapter the logits are far from PEFT's: the adapter did the work.
    assert!(peft_gap(&lora::<4>().model) > 0.1);
}

#[test]
fn the_adapter_saves_as_peft_wrote_it() {
    let loaded = with_peft_adapter();
    let out = tempfile::tempdir().unwrap();
    let config = PeftAdapterConfig {
        base_model_name_or_path: Some("tests/fixtures/llama".into()),
        task_type: Some("CAUSAL_LM".into()),
    };
    let written = save_lora_adapter(&loaded, out.path(), &config).unwrap();
    assert_eq!(
        written,
        [
            out.path().join(ADAPTER_WEIGHTS),
            out.path().join(ADAPTER_CONFIG)
        ]
    );

    // PEFT's tensors, but the head's base weight PEFT adds (`save_embedding_layers`), byte
    // for byte: names, PyTorch layout, dtype.
    let mut peft = raw(&adapter_dir().join(ADAPTER_WEIGHTS));
    assert!(peft
        .remove("base_model.model.lm_head.base_layer.weight")
        .is_some());
    let ours = raw(&out.path().join(ADAPTER_WEIGHTS));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        peft.keys().collect::<Vec<_>>()
    );
    assert!(ours.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert!(ours == peft, "the adapter's tensors differ from PEFT's");

    // The config's fields as PEFT reads them.
    let text = std::fs::read_to_string(out.path().join(ADAPTER_CONFIG)).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&text).unwrap();
    let text = std::fs::read_to_string(adapter_dir().join(ADAPTER_CONFIG)).unwrap();
    let peft: serde_json::Value = serde_json::from_str(&text).unwrap();
    for field in [
        "peft_type",
        "r",
        "lora_alpha",
        "lora_dropout",
        "bias",
        "task_type",
        "base_model_name_or_path",
        "fan_in_fan_out",
        "use_dora",
        "use_rslora",
    ] {
        assert_eq!(ours[field], peft[field], "{field}");
    }
    let mut targets: Vec<String> = serde_json::from_value(peft["target_modules"].clone()).unwrap();
    targets.sort();
    assert_eq!(ours["target_modules"], serde_json::json!(targets));

    // And it loads back to the same model.
    let again = load_lora_adapter(&lora::<4>().model, out.path()).unwrap();
    assert_eq!(peft_gap(&again), peft_gap(&loaded.model));
}

#[test]
fn the_base_saves_byte_for_byte() {
    let loaded = with_peft_adapter();
    let stock = raw(&fixtures().join("llama/model.safetensors"));
    assert_round_trip(&stock, |out| {
        save_lora_base(&loaded, out, &SaveOptions::default()).unwrap();
    });
    // Whole files too: the same header, the same order.
    let out = tempfile::tempdir().unwrap();
    save_lora_base(&loaded, out.path(), &SaveOptions::default()).unwrap();
    let saved = std::fs::read(out.path().join("model.safetensors")).unwrap();
    let original = std::fs::read(fixtures().join("llama/model.safetensors")).unwrap();
    assert!(
        saved == original,
        "the base file differs from the checkpoint"
    );
}

#[test]
fn the_merged_model_saves_as_a_stock_checkpoint_with_peft_logits() {
    let loaded = with_peft_adapter();
    let out = tempfile::tempdir().unwrap();
    save_lora_merged(&loaded, out.path(), &SaveOptions::default()).unwrap();
    let merged = raw(&out.path().join("model.safetensors"));
    let stock = raw(&fixtures().join("llama/model.safetensors"));
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        stock.keys().collect::<Vec<_>>()
    );
    // The adapted layers changed, the others (norms, embeddings) did not.
    for (key, tensor) in &stock {
        let adapted = LINEAR_NAMES
            .iter()
            .any(|n| key.ends_with(&format!("{n}.weight")));
        assert_eq!(merged[key] != *tensor, adapted, "{key}");
    }
    let config = fixtures().join("llama/config.json");
    std::fs::copy(config, out.path().join("config.json")).unwrap();
    let options = LoadOptions::default();
    let plain = Pretrained::<B>::from_path(out.path())
        .options(options.clone())
        .load::<LlamaForCausalLm<B>>(&Default::default())
        .unwrap();
    let gap = peft_gap(&plain.model);
    assert!(gap <= TOLERANCE, "merged: max |logits - PEFT| = {gap}");
}

/// The fixture's adapter with `edit` applied to its config, in a fresh folder.
fn edited_adapter(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        adapter_dir().join(ADAPTER_WEIGHTS),
        dir.path().join(ADAPTER_WEIGHTS),
    )
    .unwrap();
    let text = std::fs::read_to_string(adapter_dir().join(ADAPTER_CONFIG)).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join(ADAPTER_CONFIG), config.to_string()).unwrap();
    dir
}

#[test]
fn adapters_that_do_not_fit_are_typed_errors() {
    // Another rank: every adapter's shape differs.
    let rank8 = lora::<8>().model;
    let linears = 7 * rank8.model.layers.len() + 1;
    let err = load_lora_adapter(&rank8, adapter_dir()).unwrap_err();
    let PeftAdapterError::Mismatch { report } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(report.mismatched.len(), 2 * linears, "{report}");
    assert!(err.to_string().contains("lora_a.weight"), "{err}");

    // A scaling LoraLinear does not compute.
    let dir = edited_adapter(|c| c["lora_alpha"] = 8.into());
    let err = load_lora_adapter(&lora::<4>().model, dir.path()).unwrap_err();
    assert!(
        matches!(err, PeftAdapterError::UnsupportedConfig { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("`lora_alpha` (8) differs from `r` (4)"),
        "{err}"
    );

    // A model without adapters has none to save.
    let plain = Pretrained::<B>::from_path(fixtures().join("llama"))
        .load::<LlamaForCausalLm<B>>(&Default::default())
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = save_lora_adapter(&plain, out.path(), &PeftAdapterConfig::default()).unwrap_err();
    assert!(matches!(err, PeftAdapterError::NoAdapter), "{err:?}");
    assert!(!Path::new(&out.path().join(ADAPTER_WEIGHTS)).exists());
}
