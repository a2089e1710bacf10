//! Bad configs (issue 12): sizes that would abort the process on allocation or wrap around,
//! and floats that give NaN logits, are typed errors naming the field, before anything is
//! built; a config larger than its checkpoint fails before the build; NaN weights are counted
//! when asked.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::NdArray;
use patcher_burn::{LoadError, LoadOptions, NonFiniteCount, Patcher};
use patcher_models::llama::LlamaConfig;
use patcher_models::mixtral::{MixtralConfig, MixtralForCausalLm};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;
use patcher_models::ConfigError;
use serde_json::{json, Value};

type B = NdArray<f32>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// A folder holding a fixture's weights (qwen2_moe's by default) and `config` as its
/// `config.json`.
struct Checkout(PathBuf);

impl Checkout {
    fn new(config: &Value) -> Self {
        Self::of("qwen2_moe", config)
    }

    fn of(fixture_name: &str, config: &Value) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("patcher-bad-config-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let weights = fixture(fixture_name).join("model.safetensors");
        std::fs::copy(weights, dir.join("model.safetensors")).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        Self(dir)
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn qwen_config() -> Value {
    let text = std::fs::read_to_string(fixture("qwen2_moe/config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture's config with `edits` applied.
fn qwen_with(edits: &[(&str, Value)]) -> Value {
    let mut config = qwen_config();
    for (key, value) in edits {
        config[*key] = value.clone();
    }
    config
}

/// `LoadFamily::load` of the fixture's weights with `config`, patched by `patch`.
fn load(config: &Value, patch: Patch) -> Result<(), LoadError> {
    let checkout = Checkout::new(config);
    let good = Qwen2MoeConfig::from_file(fixture("qwen2_moe/config.json")).unwrap();
    let patcher = patch.patcher::<B, _>(&good).unwrap();
    Pretrained::<B>::from_path(&checkout.0)
        .patcher(&patcher)
        .load::<Qwen2MoeForCausalLm<B>>(&Default::default())
        .map(drop)
}

/// The config error, with the field it names.
fn field_error(result: Result<(), LoadError>) -> String {
    match result {
        Err(LoadError::Config(ConfigError::Field { field, .. })) => field,
        Err(LoadError::Config(ConfigError::CheckpointMismatch { field, .. })) => field,
        other => panic!("expected a config error naming a field, got {other:?}"),
    }
}

fn parse_field(json: &Value) -> String {
    match Qwen2MoeConfig::from_json_str(&json.to_string()) {
        Err(ConfigError::Field { field, .. }) => field,
        other => panic!("expected ConfigError::Field, got {other:?}"),
    }
}

#[test]
fn a_huge_hidden_size_is_a_field_error() {
    let config = qwen_with(&[("hidden_size", json!(1u64 << 43))]);
    assert_eq!(parse_field(&config), "hidden_size");
    assert_eq!(field_error(load(&config, Patch::NONE)), "hidden_size");
    let llama = LlamaConfig::from_json_str(r#"{"hidden_size": 8796093022208}"#);
    assert!(matches!(llama, Err(ConfigError::Field { field, .. }) if field == "hidden_size"));
}

#[test]
fn a_huge_head_dim_is_a_field_error() {
    let config = qwen_with(&[("head_dim", json!(1u64 << 40))]);
    assert_eq!(parse_field(&config), "head_dim");
    assert_eq!(field_error(load(&config, Patch::NONE)), "head_dim");
}

#[test]
fn a_hundred_million_layers_is_a_field_error() {
    let mut config = qwen_with(&[("num_hidden_layers", json!(100_000_000u64))]);
    config.as_object_mut().unwrap().remove("layer_types");
    assert_eq!(parse_field(&config), "num_hidden_layers");
    assert_eq!(field_error(load(&config, Patch::NONE)), "num_hidden_layers");
}

#[test]
fn ten_million_sequential_experts_is_a_field_error() {
    let config = qwen_with(&[("num_experts", json!(10_000_000u64))]);
    assert_eq!(parse_field(&config), "num_experts");
    assert_eq!(
        field_error(load(&config, Patch::sequential_experts())),
        "num_experts"
    );
}

#[test]
fn heads_that_wrap_the_q_size_are_a_field_error() {
    let heads = json!(1u64 << 62);
    let config = qwen_with(&[
        ("num_attention_heads", heads.clone()),
        ("num_key_value_heads", heads),
    ]);
    assert_eq!(parse_field(&config), "num_attention_heads");
    assert_eq!(
        field_error(load(&config, Patch::NONE)),
        "num_attention_heads"
    );
}

#[test]
fn a_non_positive_rope_theta_is_a_field_error() {
    for theta in [json!(0.0), json!(-10000.0)] {
        let mut config = qwen_config();
        config["rope_parameters"]["rope_theta"] = theta;
        assert_eq!(parse_field(&config), "rope_theta");
    }
    let llama = LlamaConfig::from_json_str(r#"{"rope_theta": -1}"#);
    assert!(matches!(llama, Err(ConfigError::Field { field, .. }) if field == "rope_theta"));
    let linear = LlamaConfig::from_json_str(r#"{"rope_scaling": {"type": "linear", "factor": 0}}"#);
    assert!(
        matches!(linear, Err(ConfigError::Field { field, .. }) if field == "rope_parameters.factor")
    );
}

#[test]
fn a_negative_or_zero_rms_norm_eps_is_a_field_error() {
    for eps in [json!(-1e-6), json!(0.0)] {
        let config = qwen_with(&[("rms_norm_eps", eps)]);
        assert_eq!(parse_field(&config), "rms_norm_eps");
        assert_eq!(field_error(load(&config, Patch::NONE)), "rms_norm_eps");
    }
}

#[test]
fn zero_sizes_are_field_errors() {
    for field in [
        "vocab_size",
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "moe_intermediate_size",
        "shared_expert_intermediate_size",
    ] {
        let config = qwen_with(&[(field, json!(0))]);
        assert_eq!(parse_field(&config), field);
    }
}

#[test]
fn a_config_larger_than_its_checkpoint_fails_before_the_build() {
    for (field, value) in [
        ("vocab_size", json!(256)),
        ("hidden_size", json!(128)),
        ("num_experts", json!(8)),
        ("moe_intermediate_size", json!(100_000)),
    ] {
        let config = qwen_with(&[(field, value)]);
        // moe_intermediate_size is seen in the parameter count only: the field is still named.
        assert_eq!(field_error(load(&config, Patch::NONE)), field, "{field}");
    }
    let mut config = qwen_with(&[("num_hidden_layers", json!(3))]);
    config["layer_types"] = json!(["full_attention", "full_attention", "full_attention"]);
    assert_eq!(field_error(load(&config, Patch::NONE)), "num_hidden_layers");
}

#[cfg(unix)]
#[test]
fn a_config_that_is_a_fifo_is_refused_without_blocking() {
    let checkout = Checkout::new(&qwen_config());
    let config = checkout.0.join("config.json");
    std::fs::remove_file(&config).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&config).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo is not available; skipped");
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Qwen2MoeConfig::from_file(config).map(drop));
    });
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("reading the config hung");
    assert!(
        matches!(result, Err(ConfigError::NotAConfig { .. })),
        "{result:?}"
    );
}

#[test]
fn nan_and_inf_weights_are_counted_when_asked() {
    let checkout = Checkout::new(&qwen_config());
    let file = checkout.0.join("model.safetensors");
    let options = LoadOptions::default().check_finite();
    let load = || {
        Pretrained::<B>::from_path(&checkout.0)
            .options(options.clone())
            .load::<Qwen2MoeForCausalLm<B>>(&Default::default())
            .unwrap()
    };
    assert!(load().non_finite.is_empty());

    // Two NaNs and one -inf in `model.norm.weight` (f32 in the fixture).
    let key = "model.norm.weight";
    let mut bytes = std::fs::read(&file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header[key]["dtype"], "F32");
    let offset = 8 + header_len + header[key]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[offset..offset + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    bytes[offset + 4..offset + 8].copy_from_slice(&f32::NAN.to_le_bytes());
    bytes[offset + 8..offset + 12].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
    std::fs::write(&file, bytes).unwrap();
    let loaded = load();
    assert_eq!(
        loaded.non_finite,
        [NonFiniteCount { key: key.into(), nan: 2, inf: 1 }]
    );
    // Off by default: nothing counted.
    let plain = Pretrained::<B>::from_path(&checkout.0)
        .load::<Qwen2MoeForCausalLm<B>>(&Default::default())
        .unwrap();
    assert!(plain.non_finite.is_empty());
}

#[test]
fn model_size_counts_the_parameters_the_model_builds() {
    use patcher_burn::model_params;
    use patcher_models::common::limits::SizedConfig;
    use patcher_models::llama::LlamaForCausalLm;

    let count = |params: Vec<patcher_burn::ParamInfo>| -> u64 {
        params
            .iter()
            .map(|p| p.torch_shape.iter().product::<usize>() as u64)
            .sum()
    };
    let device = Default::default();
    // All-sparse, and dense layers among sparse ones.
    for name in ["qwen2_moe", "qwen2_moe_dense"] {
        let qwen = Qwen2MoeConfig::from_file(fixture(name).join("config.json")).unwrap();
        for patch in [Patch::fused_qkv(), Patch::seed()] {
            let patcher = patch.patcher::<B, _>(&qwen).unwrap();
            let model = Qwen2MoeForCausalLm::<B>::with_patcher(&qwen, &patcher, &device).unwrap();
            assert_eq!(
                count(model_params(&model)),
                qwen.model_size().unwrap().parameters,
                "{name}"
            );
        }
    }
    let mixtral = MixtralConfig::from_file(fixture("mixtral/config.json")).unwrap();
    let model = MixtralForCausalLm::<B>::new(&mixtral, &device);
    assert_eq!(
        count(model_params(&model)),
        mixtral.model_size().unwrap().parameters
    );
    for json in [
        r#"{"vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2}"#,
        r#"{"vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1,
            "num_attention_heads": 4, "attention_bias": true, "mlp_bias": true,
            "tie_word_embeddings": true}"#,
    ] {
        let llama = LlamaConfig::from_json_str(json).unwrap();
        let model = LlamaForCausalLm::<B>::with_patcher(&llama, &Patcher::new(), &device).unwrap();
        assert_eq!(
            count(model_params(&model)),
            llama.model_size().unwrap().parameters,
            "{json}"
        );
    }
}

#[test]
fn mixtral_bad_configs_are_typed_errors() {
    let text = std::fs::read_to_string(fixture("mixtral/config.json")).unwrap();
    let good: Value = serde_json::from_str(&text).unwrap();
    let load = |config: &Value| {
        let checkout = Checkout::of("mixtral", config);
        let options = LoadOptions::default();
        Pretrained::<B>::from_path(&checkout.0)
            .options(options.clone())
            .load::<MixtralForCausalLm<B>>(&Default::default())
            .map(drop)
    };
    load(&good).expect("the fixture's own config loads");
    for (field, value) in [
        ("num_local_experts", json!(10_000_000u64)),
        ("num_local_experts", json!(0)),
        ("intermediate_size", json!(0)),
        ("intermediate_size", json!(1u64 << 40)),
        ("hidden_size", json!(1u64 << 43)),
        ("sliding_window", json!(0)),
        ("rms_norm_eps", json!(-1.0)),
    ] {
        let mut config = good.clone();
        config[field] = value.clone();
        let parsed = MixtralConfig::from_json_str(&config.to_string());
        assert!(
            matches!(&parsed, Err(ConfigError::Field { field: f, .. }) if f == field),
            "{field} = {value}: {parsed:?}"
        );
        assert_eq!(field_error(load(&config)), field, "{field} = {value}");
    }
    // More experts per token than experts.
    let mut config = good.clone();
    config["num_experts_per_tok"] = json!(5);
    let parsed = MixtralConfig::from_json_str(&config.to_string());
    assert!(matches!(parsed, Err(ConfigError::Invalid(_))), "{parsed:?}");
    // Larger than the checkpoint: caught before the build.
    let mut config = good.clone();
    config["num_local_experts"] = json!(8);
    assert_eq!(field_error(load(&config)), "num_local_experts");
}

#[test]
fn qwen2_moe_dense_layer_settings_are_checked() {
    let config = qwen_with(&[("decoder_sparse_step", json!(0))]);
    assert_eq!(parse_field(&config), "decoder_sparse_step");
    assert_eq!(
        field_error(load(&config, Patch::NONE)),
        "decoder_sparse_step"
    );
    // A dense layer 1 the checkpoint does not have (it holds experts there): a typed load
    // error naming the missing dense weights, not a panic.
    let config = qwen_with(&[("mlp_only_layers", json!([1]))]);
    match load(&config, Patch::NONE) {
        Err(error @ LoadError::Incomplete { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("model.layers.1.mlp.gate_proj.weight"),
                "{message}"
            );
        }
        other => panic!("expected a load error, got {other:?}"),
    }
}
