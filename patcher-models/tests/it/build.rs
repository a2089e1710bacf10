//! Building the models through slots: parameter paths are transformers' names, the class
//! listing, and the errors of a wrong mapping.

use crate::common::{fixtures, param_paths};
use burn::backend::NdArray;
use burn::module::Module;
use burn::prelude::*;
use patcher_burn::{list_slots, replacement, BuildError, Patcher};
use patcher_models::common::AttentionInterface;
use patcher_models::llama::{LlamaConfig, LlamaForCausalLm};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::{FusedQkvAttention, Patch};

type B = NdArray<f32>;

fn qwen_config() -> Qwen2MoeConfig {
    Qwen2MoeConfig::from_file(fixtures().join("qwen2_moe/config.json")).unwrap()
}

#[test]
fn qwen2_moe_parameter_names_are_transformers_names() {
    let device = Default::default();
    let model = Qwen2MoeForCausalLm::<B>::new(&qwen_config(), &device);
    let paths = param_paths(&model);
    for expected in [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.q_proj.bias",
        "model.layers.1.self_attn.o_proj.weight",
        "model.layers.0.mlp.gate.weight",
        "model.layers.0.mlp.experts.gate_up_proj",
        "model.layers.0.mlp.experts.down_proj",
        "model.layers.0.mlp.shared_expert.down_proj.weight",
        "model.layers.0.mlp.shared_expert_gate.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.1.post_attention_layernorm.weight",
        "model.norm.weight",
        "lm_head.weight",
    ] {
        assert!(
            paths.contains(&expected.to_string()),
            "{expected} not in {paths:?}"
        );
    }
    assert!(!paths.iter().any(|p| p.contains("o_proj.bias")));

    let patched = Qwen2MoeForCausalLm::<B>::with_patcher(
        &qwen_config(),
        &Patch::seed().patcher(&qwen_config()).unwrap(),
        &device,
    )
    .unwrap();
    let paths = param_paths(&patched);
    for expected in [
        "model.layers.0.self_attn.qkv_proj.weight",
        "model.layers.0.self_attn.qkv_proj.bias",
        "model.layers.1.mlp.experts.3.up_proj.weight",
    ] {
        assert!(
            paths.contains(&expected.to_string()),
            "{expected} not in {paths:?}"
        );
    }
    assert_eq!(patched.num_params(), model.num_params());
}

#[test]
fn slot_listing() {
    let device = Default::default();
    let model = Qwen2MoeForCausalLm::<B>::with_patcher(
        &qwen_config(),
        &Patch::seed().patcher(&qwen_config()).unwrap(),
        &device,
    )
    .unwrap();
    // Every class is a slot (layers, norms, router, ...): the replaced ones are listed here.
    let listing: Vec<(String, String, String, bool)> = list_slots(&model)
        .into_iter()
        .filter(|s| s.replaced)
        .map(|s| (s.path, s.original_class, s.class, s.replaced))
        .collect();
    let row = |p: &str, o: &str, c: &str| (p.to_string(), o.to_string(), c.to_string(), true);
    assert_eq!(
        listing,
        vec![
            row(
                "model.layers.0.self_attn",
                "Qwen2MoeAttention",
                "FusedQKVAttention"
            ),
            row(
                "model.layers.0.mlp.experts",
                "Qwen2MoeExperts",
                "SequentialExperts"
            ),
            row(
                "model.layers.1.self_attn",
                "Qwen2MoeAttention",
                "FusedQKVAttention"
            ),
            row(
                "model.layers.1.mlp.experts",
                "Qwen2MoeExperts",
                "SequentialExperts"
            ),
        ]
    );
}

#[test]
fn unknown_class_is_an_error_with_the_model_classes() {
    let device = Default::default();
    let patcher = Patcher::<B>::new().class_mapping(
        "Qwen2MoeAtention",
        replacement::<FusedQkvAttention<B>, dyn AttentionInterface<B>>(),
    );
    let err =
        Qwen2MoeForCausalLm::<B>::with_patcher(&qwen_config(), &patcher, &device).unwrap_err();
    let message = err.to_string();
    println!("{message}");
    assert!(matches!(err, BuildError::Patcher(_)));
    assert!(
        message.contains("did you mean `Qwen2MoeAttention`?"),
        "{message}"
    );
    assert!(message.contains("Qwen2MoeAttention"), "{message}");
}

#[test]
fn replacement_of_the_wrong_interface_is_an_error() {
    let device = Default::default();
    // An attention class mapped onto the experts, whose slots take `ExpertsInterface` classes.
    let patcher = Patcher::<B>::new().class_mapping(
        "Qwen2MoeExperts",
        replacement::<FusedQkvAttention<B>, dyn AttentionInterface<B>>(),
    );
    let err =
        Qwen2MoeForCausalLm::<B>::with_patcher(&qwen_config(), &patcher, &device).unwrap_err();
    println!("{err}");
    assert!(matches!(err, BuildError::WrongInterface { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("AttentionInterface") && message.contains("ExpertsInterface"),
        "{message}"
    );
}

#[test]
fn llama_parameter_names_and_tied_embeddings() {
    let device = Default::default();
    let config = LlamaConfig::from_file(fixtures().join("llama/config.json")).unwrap();
    let model = LlamaForCausalLm::<B>::new(&config, &device);
    let paths = param_paths(&model);
    assert!(paths.contains(&"model.layers.2.self_attn.q_proj.weight".to_string()));
    assert!(paths.contains(&"lm_head.weight".to_string()));
    assert!(!paths.iter().any(|p| p.ends_with(".bias")));

    let mut tied = config.clone();
    tied.core.tie_word_embeddings = true;
    let model = LlamaForCausalLm::<B>::new(&tied, &device);
    assert!(!param_paths(&model).contains(&"lm_head.weight".to_string()));
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3], [1, 3]), &device);
    assert_eq!(model.forward(ids).dims(), [1, 3, config.core.vocab_size]);
}
