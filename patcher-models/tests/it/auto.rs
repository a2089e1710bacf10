//! The Auto classes: every kit family loaded from its checkpoint folder by the `model_type` of
//! its `config.json`, patched by a `Patch`: logits within 1e-4 of transformers', the slots the
//! patch replaces, and the save back byte for byte. A `model_type` with no family, a config
//! without one and a patch the family cannot take are typed errors; a registry holds only what
//! is registered.

use std::path::{Path, PathBuf};

use crate::common::{fixtures, input_ids, max_abs_diff, read_reference, scratch};
use burn::prelude::Backend;
use patcher_burn::{LoadError, LoadOptions, SaveOptions};
use patcher_models::auto::{AutoModel, AutoModelForCausalLm, LoadedModel};
use patcher_models::llama::LlamaForCausalLm;
use patcher_models::replacements::Patch;
use patcher_models::ConfigError;

const TOLERANCE: f32 = 1e-4;

/// Checks `loaded`'s family, that a clean load replaced the classes of `patch`'s presets, and
/// that it saves back as the fixture's file.
fn check_loaded<B: Backend>(
    loaded: &dyn LoadedModel<B>,
    dir: &str,
    model_type: &str,
    patch: Patch,
) {
    assert_eq!(loaded.model_type(), model_type, "{dir}");
    assert!(loaded.report().is_clean(), "{dir}: {}", loaded.report());
    let replaced: Vec<String> = loaded
        .slots()
        .into_iter()
        .filter(|s| s.replaced)
        .map(|s| s.class)
        .collect();
    for (_, preset) in Patch::seed().presets() {
        let class = if preset == Patch::fused_qkv() {
            if model_type == "bert" {
                "FusedQKVBertSelfAttention"
            } else {
                "FusedQKVAttention"
            }
        } else {
            "SequentialExperts"
        };
        let count = replaced.iter().filter(|c| *c == class).count();
        assert_eq!(count > 0, patch.contains(preset), "{dir} {patch}: {class}");
    }
    // One folder per backend and case: the backends' tests run at once.
    let backend: String = std::any::type_name::<B>()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let out = scratch(&format!("auto-{dir}-{patch}-{backend}"));
    loaded
        .save_pretrained(&out, &SaveOptions::default())
        .unwrap();
    let saved = std::fs::read(out.join("model.safetensors")).unwrap();
    let original = std::fs::read(fixtures().join(dir).join("model.safetensors")).unwrap();
    assert!(saved == original, "{dir} {patch}: saved file differs");
    std::fs::remove_dir_all(out).ok();
}

fn causal_lms<B: Backend>(device: &B::Device) {
    let auto = AutoModelForCausalLm::<B>::new();
    for (dir, model_type, patches) in [
        ("llama", "llama", [Patch::NONE, Patch::fused_qkv()]),
        ("qwen2_moe", "qwen2_moe", [Patch::NONE, Patch::seed()]),
        (
            "mixtral_fused",
            "mixtral",
            [Patch::sequential_experts(), Patch::seed()],
        ),
    ] {
        let path = fixtures().join(dir);
        let reference = read_reference(&path);
        for patch in patches {
            let loaded = auto
                .from_pretrained(&path, patch, device, &LoadOptions::default())
                .unwrap();
            let logits = loaded.forward(input_ids::<B>(&reference, device));
            let diff = max_abs_diff(&logits, &reference.logits);
            assert!(
                diff <= TOLERANCE,
                "{dir} {patch}: logits {diff:.3e} from transformers'"
            );
            check_loaded::<B>(&*loaded, dir, model_type, patch);
        }
    }
}

fn bert<B: Backend>(device: &B::Device) {
    let auto = AutoModel::<B>::new();
    for patch in [Patch::NONE, Patch::fused_qkv()] {
        let path = fixtures().join("bert");
        let loaded = auto
            .from_pretrained(&path, patch, device, &LoadOptions::default())
            .unwrap();
        check_loaded::<B>(&*loaded, "bert", "bert", patch);
    }
}

/// A copy of the fixture `dir` whose `config.json` went through `edit`.
fn with_config(dir: &str, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let out = scratch(name);
    let from = fixtures().join(dir);
    std::fs::copy(
        from.join("model.safetensors"),
        out.join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();
    out
}

fn config_error(result: Result<impl Sized, LoadError>) -> ConfigError {
    match result {
        Err(LoadError::Config(error)) => error,
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("expected a config error, got a model"),
    }
}

fn load<B: Backend>(
    auto: &AutoModelForCausalLm<B>,
    path: &Path,
    patch: Patch,
) -> Result<(), LoadError> {
    let options = LoadOptions::default();
    auto.from_pretrained(path, patch, &Default::default(), &options)
        .map(drop)
}

#[test]
fn unknown_and_missing_model_types_are_config_errors_naming_the_families() {
    type B = burn::backend::NdArray<f32>;
    let auto = AutoModelForCausalLm::<B>::new();
    let falcon = with_config("llama", "auto-falcon", |c| {
        c["model_type"] = "falcon".into()
    });
    let error = config_error(load(&auto, &falcon, Patch::NONE));
    let message = error.to_string();
    assert!(matches!(error, ConfigError::Unsupported(_)), "{message}");
    assert!(
        message.contains("`falcon`") && message.contains("gpt2, llama, mixtral, qwen2_moe"),
        "{message}"
    );

    let untyped = with_config("llama", "auto-untyped", |c| {
        c.as_object_mut().unwrap().remove("model_type");
    });
    let error = config_error(load(&auto, &untyped, Patch::NONE));
    assert!(matches!(error, ConfigError::Invalid(_)), "{error}");
    assert!(error.to_string().contains("model_type"), "{error}");
    for dir in [falcon, untyped] {
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn a_patch_the_family_cannot_take_is_a_config_error() {
    type B = burn::backend::NdArray<f32>;
    let auto = AutoModelForCausalLm::<B>::new();
    let error = config_error(load(&auto, &fixtures().join("llama"), Patch::seed()));
    let ConfigError::UnsupportedPatch { patch, model_type, supported } = &error else {
        panic!("expected UnsupportedPatch, got {error}");
    };
    assert_eq!(
        (patch.as_str(), model_type.as_str(), supported.as_str()),
        ("fused-qkv+sequential-experts", "llama", "fused-qkv")
    );
}

#[test]
fn a_registry_loads_only_what_is_registered() {
    type B = burn::backend::NdArray<f32>;
    let only_llama = AutoModelForCausalLm::<B>::empty().register::<LlamaForCausalLm<B>>();
    assert_eq!(only_llama.model_types().collect::<Vec<_>>(), ["llama"]);
    load(&only_llama, &fixtures().join("llama"), Patch::NONE).unwrap();
    let error = config_error(load(
        &only_llama,
        &fixtures().join("qwen2_moe"),
        Patch::NONE,
    ));
    assert!(error.to_string().contains("registered: llama)"), "{error}");
    // Registering a model type again replaces it; a causal LM is a bare model too.
    let again = only_llama.register::<LlamaForCausalLm<B>>();
    assert_eq!(again.model_types().count(), 1);
    let bare = AutoModel::<B>::new().register::<LlamaForCausalLm<B>>();
    assert_eq!(bare.model_types().collect::<Vec<_>>(), ["bert", "llama"]);
}

macro_rules! auto_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn every_causal_lm_loads_by_model_type() {
            causal_lms::<B>(&$device);
        }

        #[test]
        fn bert_loads_by_model_type() {
            bert::<B>(&$device);
        }
    };
}

crate::common::on_every_backend!(auto_tests);
