//! The seed's replacements compute what the classes they replace compute, given the converted
//! weights: `FusedQKVAttention` (q/k/v rows concatenated) against `Qwen2MoeAttention` and
//! `LlamaAttention`, `SequentialExperts` (checkpoint keys as they are) against the fused
//! `Qwen2MoeExperts`, on the fixtures' layer weights and a fixed input.

use crate::common::{assign, fixtures, param_paths, read_checkpoint, seeded_input};
use burn::backend::NdArray;
use burn::module::Module;
use burn::prelude::*;
use patcher_burn::{model_params, BuildContext};
use patcher_models::common::{
    causal_mask, AttentionInputs, DecoderAttention, MoeExperts, MoeRouter, PositionEmbeddings,
    RotaryEmbedding,
};
use patcher_models::llama::{LlamaAttention, LlamaConfig};
use patcher_models::qwen2_moe::{
    Qwen2MoeAttention, Qwen2MoeConfig, Qwen2MoeExperts, Qwen2MoeTopKRouter,
};
use patcher_models::replacements::{FusedQkvAttention, SequentialExperts};

type B = NdArray<f32>;

/// The RoPE tables and the mask of a forward without cache.
fn inputs<'a>(
    pe: &'a PositionEmbeddings<B>,
    mask: &'a Tensor<B, 4, Bool>,
) -> AttentionInputs<'a, B> {
    AttentionInputs {
        position_embeddings: Some(pe),
        attention_mask: Some(mask),
        cache: None,
    }
}

/// Burn's shape of the parameter at `path`.
fn burn_shape<M: Module<B>>(module: &M, path: &str) -> Vec<usize> {
    model_params(module)
        .into_iter()
        .find(|p| p.burn_path == path)
        .map(|p| p.burn_shape)
        .unwrap_or_else(|| panic!("no parameter {path}"))
}

fn max_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn fused_qkv_matches_qwen2_moe_attention() {
    let device = Default::default();
    let ctx = BuildContext::plain(&device);
    let dir = fixtures().join("qwen2_moe");
    let config = Qwen2MoeConfig::from_file(dir.join("config.json")).unwrap();
    let weights = read_checkpoint(&dir);
    for layer in 0..config.core.num_hidden_layers {
        let prefix = format!("model.layers.{layer}.self_attn.");
        let (original, _) = assign(
            Qwen2MoeAttention::<B>::new(&config.attention_spec(layer), layer, &ctx),
            &weights,
            &prefix,
            &device,
        );
        let (fused, used) = assign(
            FusedQkvAttention::<B>::new(&config.attention_spec(layer), layer, &ctx),
            &weights,
            &prefix,
            &device,
        );
        assert_eq!(used.len(), 7, "q/k/v weight+bias and o_proj: {used:?}");
        assert_eq!(fused.num_params(), original.num_params());
        let [_, fused_out] = burn_shape(&fused, "qkv_proj.weight")[..] else {
            panic!("qkv_proj.weight is 2-D")
        };
        assert_eq!(fused_out, (4 + 2 * 2) * 16, "(H + 2*KV) * head_dim");

        let x = seeded_input::<B>([2, 7, config.core.hidden_size], 7 + layer as u64, &device);
        let pe =
            RotaryEmbedding::new(&config.core.rope, config.core.head_dim).forward::<B>(7, &device);
        let mask = causal_mask::<B>(7, None, &device);
        let a = original.forward(x.clone(), inputs(&pe, &mask));
        let b = fused.forward(x, inputs(&pe, &mask));
        let diff = max_diff(a, b);
        println!("qwen2_moe layer {layer}: fused QKV vs original max abs diff {diff:.3e}");
        assert!(diff <= 1e-5);
    }
}

#[test]
fn fused_qkv_matches_llama_attention() {
    let device = Default::default();
    let ctx = BuildContext::plain(&device);
    let dir = fixtures().join("llama");
    let config = LlamaConfig::from_file(dir.join("config.json")).unwrap();
    let weights = read_checkpoint(&dir);
    let prefix = "model.layers.1.self_attn.";
    let (original, _) = assign(
        LlamaAttention::<B>::new(&config.attention_spec(1), 1, &ctx),
        &weights,
        prefix,
        &device,
    );
    let (fused, _) = assign(
        FusedQkvAttention::<B>::new(&config.attention_spec(1), 1, &ctx),
        &weights,
        prefix,
        &device,
    );
    assert!(
        !model_params(&fused)
            .iter()
            .any(|p| p.burn_path == "qkv_proj.bias"),
        "llama fixture has no attention bias"
    );
    let x = seeded_input::<B>([2, 5, config.core.hidden_size], 11, &device);
    let pe = RotaryEmbedding::new(&config.core.rope, config.core.head_dim).forward::<B>(5, &device);
    let mask = causal_mask::<B>(5, None, &device);
    let diff = max_diff(
        original.forward(x.clone(), inputs(&pe, &mask)),
        fused.forward(x, inputs(&pe, &mask)),
    );
    println!("llama: fused QKV vs original max abs diff {diff:.3e}");
    assert!(diff <= 1e-5);
}

#[test]
fn sequential_experts_match_fused_experts() {
    let device = Default::default();
    let dir = fixtures().join("qwen2_moe");
    let config = Qwen2MoeConfig::from_file(dir.join("config.json")).unwrap();
    let weights = read_checkpoint(&dir);
    for layer in 0..config.core.num_hidden_layers {
        let prefix = format!("model.layers.{layer}.mlp.");
        let (router, _) = assign(
            Qwen2MoeTopKRouter::<B>::new(&config.router_spec(), &device),
            &weights,
            &format!("{prefix}gate."),
            &device,
        );
        let experts_prefix = format!("{prefix}experts.");
        let (fused, _) = assign(
            Qwen2MoeExperts::<B>::new(&config.experts_spec(), &device),
            &weights,
            &experts_prefix,
            &device,
        );
        let (sequential, used) = assign(
            SequentialExperts::<B>::new(&config.experts_spec(), &device),
            &weights,
            &experts_prefix,
            &device,
        );
        assert_eq!(used.len(), 3 * config.num_experts);
        assert!(used.contains(&format!("{experts_prefix}3.down_proj.weight")));
        assert_eq!(sequential.num_params(), fused.num_params());

        let x = seeded_input::<B>([1, 40, config.core.hidden_size], 3 + layer as u64, &device)
            .reshape([40, config.core.hidden_size]);
        let routing = router.forward(x.clone());
        let a = fused.forward(
            x.clone(),
            routing.top_k_index.clone(),
            routing.top_k_weights.clone(),
        );
        let b = sequential.forward(x, routing.top_k_index, routing.top_k_weights);
        let diff = max_diff(a, b);
        println!("layer {layer}: sequential vs fused experts max abs diff {diff:.3e}");
        assert!(diff <= 1e-5);
    }
}

#[test]
fn sequential_experts_paths_are_the_checkpoint_keys() {
    let device = Default::default();
    let config = Qwen2MoeConfig::from_file(fixtures().join("qwen2_moe/config.json")).unwrap();
    let experts = SequentialExperts::<B>::new(&config.experts_spec(), &device);
    let names = param_paths(&experts);
    assert_eq!(names.len(), 3 * config.num_experts);
    assert_eq!(names[0], "0.gate_proj.weight");
    assert!(names.contains(&"3.down_proj.weight".to_string()));
    let display = experts.to_string();
    assert!(display.contains("SequentialExperts"), "{display}");
}
