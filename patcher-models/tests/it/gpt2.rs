//! GPT-2 through the real loader (`LoadFamily::load`), from what
//! `save_pretrained` writes (`transformer.` keys, head tied to `wte`) and from the original hub
//! layout (no prefix, `attn.bias` buffers): parity with transformers on the logits and every
//! hidden state, the tied head through the embedding slot, saves back, and typed errors. Its
//! cache and padding are tested with the other decoders' (`cache.rs`).

use burn::prelude::*;
use patcher_burn::{list_slots, LoadOptions, Loaded};
use patcher_core::Checkpoint;
use patcher_models::common::DecoderInputError;
use patcher_models::gpt2::{Gpt2Config, Gpt2LmHeadModel};
use patcher_models::prelude::*;
use patcher_models::ConfigError;

use crate::common::parity::assert_parity;
use crate::common::{
    assert_saves_back_byte_for_byte, fixtures, input_ids, read_reference, scratch,
};

const TOLERANCE: f32 = 1e-4;

fn load<B: Backend>(dir: &str, device: &B::Device) -> Loaded<Gpt2LmHeadModel<B>> {
    let options = LoadOptions::default();
    let path = fixtures().join(dir);
    Pretrained::<B>::from_path(&path)
        .options(options.clone())
        .load::<Gpt2LmHeadModel<B>>(device)
        .unwrap()
}

fn parity<B: Backend>(device: &B::Device) {
    for dir in ["gpt2", "gpt2_legacy"] {
        let loaded = load::<B>(dir, device);
        let report = &loaded.report;
        assert!(report.is_clean(), "{dir}: {report}");
        // The legacy checkpoint's causal-mask buffers are known, not parameters.
        let ignored = if dir == "gpt2" {
            vec![]
        } else {
            vec!["h.0.attn.bias", "h.1.attn.bias"]
        };
        assert_eq!(report.ignored, ignored, "{dir}");
        let reference = read_reference(&fixtures().join(dir));
        let out = loaded
            .model
            .forward_with_hidden_states(input_ids::<B>(&reference, device));
        assert_parity(dir, &out, &reference, TOLERANCE);
    }
}

#[test]
fn every_class_is_a_slot_and_the_head_is_tied() {
    type B = burn::backend::NdArray<f32>;
    let loaded = load::<B>("gpt2", &Default::default());
    let slots = list_slots(&loaded.model);
    let count = |class: &str| slots.iter().filter(|s| s.original_class == class).count();
    for (class, expected) in [("GPT2Block", 2), ("GPT2Attention", 2), ("GPT2MLP", 2)] {
        assert_eq!(count(class), expected, "{class}");
    }
    assert_eq!((count("Embedding"), count("LayerNorm")), (2, 5));
    // No head of its own: the logits are `wte`'s, through the slot.
    assert!(loaded.model.lm_head.is_none());
}

#[test]
fn saves_back_byte_for_byte_and_without_the_added_prefix() {
    type B = burn::backend::NdArray<f32>;
    let loaded = load::<B>("gpt2", &Default::default());
    assert_saves_back_byte_for_byte(&loaded, &fixtures().join("gpt2"), "gpt2-save", "gpt2");
    // The legacy layout saves as it was loaded: no `transformer.` prefix (the buffers, not
    // parameters, are not written).
    let legacy = load::<B>("gpt2_legacy", &Default::default());
    let out = scratch("gpt2-legacy-save");
    patcher_burn::save_pretrained(&legacy, &out).unwrap();
    let saved = Checkpoint::open(&out).unwrap();
    let keys: Vec<&str> = saved.keys().collect();
    assert!(
        keys.contains(&"h.0.attn.c_attn.weight") && keys.contains(&"wte.weight"),
        "{keys:?}"
    );
    let buffers_or_prefix = |k: &&str| k.starts_with("transformer.") || k.ends_with(".attn.bias");
    assert!(!keys.iter().any(buffers_or_prefix), "{keys:?}");
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn configs_follow_transformers_and_refuse_what_is_not_implemented() {
    let config = Gpt2Config::from_json_str("{}").unwrap();
    assert_eq!(
        (config.vocab_size, config.n_embd, config.n_layer),
        (50257, 768, 12)
    );
    assert_eq!((config.inner_size(), config.n_positions), (3072, 1024));
    assert!(config.tie_word_embeddings);
    for (json, field) in [
        (
            r#"{"scale_attn_by_inverse_layer_idx": true}"#,
            "scale_attn_by_inverse_layer_idx",
        ),
        (
            r#"{"reorder_and_upcast_attn": true}"#,
            "reorder_and_upcast_attn",
        ),
        (r#"{"activation_function": "mish"}"#, "mish"),
    ] {
        let err = Gpt2Config::from_json_str(json).unwrap_err();
        assert!(matches!(err, ConfigError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    let err = Gpt2Config::from_json_str(r#"{"model_type": "llama"}"#).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
    assert!(
        err.to_string()
            .contains(r#"model_type is "llama", expected "gpt2""#),
        "{err}"
    );
    let err = Gpt2Config::from_json_str(r#"{"n_embd": 10, "n_head": 4}"#).unwrap_err();
    assert!(
        matches!(err, ConfigError::Field { ref field, .. } if field == "n_head"),
        "{err}"
    );
}

#[test]
fn positions_beyond_the_table_are_a_typed_error() {
    type B = burn::backend::NdArray<f32>;
    let device = Default::default();
    let model = load::<B>("gpt2", &device).model;
    let mut cache = KvCache::new();
    let ids = Tensor::<B, 2, Int>::ones([1, 64], &device);
    model.forward_cached(ids, None, &mut cache).unwrap();
    let one_more = Tensor::<B, 2, Int>::ones([1, 1], &device);
    let err = model
        .forward_cached(one_more, None, &mut cache)
        .unwrap_err();
    assert_eq!(err, DecoderInputError::TooLong { position: 64, max: 64 });
    assert!(err.to_string().contains("n_positions"), "{err}");
}

macro_rules! gpt2_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        #[test]
        fn parity_with_transformers() {
            parity::<$backend>(&$device);
        }
    };
}

crate::common::on_every_backend!(gpt2_tests);
