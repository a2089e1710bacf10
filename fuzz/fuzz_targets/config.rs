//! A `config.json` of arbitrary text: parse it as each model family; a config that parses has
//! a model size (checked arithmetic) within the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patcher_models::common::limits::{SizedConfig, MAX_PARAMETERS};
use patcher_models::llama::LlamaConfig;
use patcher_models::mixtral::MixtralConfig;
use patcher_models::qwen2_moe::Qwen2MoeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = LlamaConfig::from_json_str(text) {
        let size = config.model_size().expect("a valid config has a size");
        assert!(size.parameters <= MAX_PARAMETERS);
        assert!(config.rms_norm_eps > 0.0 && config.rope.rope_theta > 0.0);
    }
    if let Ok(config) = Qwen2MoeConfig::from_json_str(text) {
        let size = config.model_size().expect("a valid config has a size");
        assert!(size.parameters <= MAX_PARAMETERS);
        assert!(config.num_experts_per_tok <= config.num_experts);
    }
    if let Ok(config) = MixtralConfig::from_json_str(text) {
        let size = config.model_size().expect("a valid config has a size");
        assert!(size.parameters <= MAX_PARAMETERS && size.num_experts.is_some());
    }
});
