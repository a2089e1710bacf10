//! Where a Qwen2-MoE prefill forward spends its time: each part of the model run on its own, on
//! the inputs the forward gives it, timed over rounds (medians), with its FLOPs and GFLOP/s.
//!
//! The parts are the model's own modules (its fields are public), called as the forward calls
//! them; the attention core (`eager_attention`: head split, RoPE, `repeat_kv`, scores, mask,
//! softmax, head merge) is also timed alone, on the projections' outputs.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use patcher_models::common::{causal_mask, eager_attention, AttentionInputs, RotaryEmbedding};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{
    Qwen2MoeConfig, Qwen2MoeDecoderLayer, Qwen2MoeForCausalLm, Qwen2MoeLayerMlp,
    Qwen2MoeSparseMoeBlock,
};

use super::stats::median;
use super::table::Table;

/// One part's figures, per forward.
pub struct Part {
    /// What was timed.
    pub name: &'static str,
    /// Median seconds per forward (summed over the layers).
    pub seconds: f64,
    /// Floating-point operations of its matmuls per forward (0 where none).
    pub flops: f64,
}

/// Times the parts of `model`'s forward on `input_ids`, `rounds` times each.
pub fn breakdown<B: Backend>(
    model: &Qwen2MoeForCausalLm<B>,
    config: &Qwen2MoeConfig,
    input_ids: Tensor<B, 2, Int>,
    rounds: usize,
) -> Vec<Part> {
    let device = input_ids.device();
    let [batch, seq] = input_ids.dims();
    let tokens = (batch * seq) as f64;
    let (h, layers) = (
        config.core.hidden_size as f64,
        config.core.num_hidden_layers as f64,
    );
    let spec = config.attention_spec(0);
    let (q, kv) = (spec.q_size() as f64, spec.kv_size() as f64);
    let active = config.num_experts_per_tok as f64 * config.moe_intermediate_size as f64;
    let shared = config.shared_expert_intermediate_size as f64;
    let heads = config.core.num_attention_heads as f64;

    // Inputs of each part, from one forward (layer 0's; the layers are alike).
    let rope = RotaryEmbedding::new(&config.core.rope, config.core.head_dim);
    let pe = rope.forward::<B>(seq, &device);
    let mask = causal_mask::<B>(seq, None, &device);
    let m = &model.model;
    // The unpatched classes, reached through their slots.
    let layer = m.layers[0]
        .module_as::<Qwen2MoeDecoderLayer<B>>()
        .expect("an unpatched decoder layer");
    let Qwen2MoeLayerMlp::Sparse(block) = &layer.mlp else {
        panic!("the benchmark's layers are all sparse");
    };
    let block = block
        .module_as::<Qwen2MoeSparseMoeBlock<B>>()
        .expect("an unpatched sparse MoE block");
    let embedded = m.embed_tokens.forward(input_ids.clone());
    let normed = layer.input_layernorm.forward(embedded.clone());
    let flat = normed
        .clone()
        .reshape([batch * seq, config.core.hidden_size]);
    let routing = block.gate.forward(flat.clone());
    let q_in = Tensor::<B, 3>::random([batch, seq, spec.q_size()], Distribution::Default, &device);
    let k_in = Tensor::<B, 3>::random([batch, seq, spec.kv_size()], Distribution::Default, &device);
    let v_in = k_in.clone();

    let time = |f: &dyn Fn() -> Tensor<B, 3>| {
        let run = || {
            let start = Instant::now();
            let out = f();
            B::sync(&device).ok();
            let seconds = start.elapsed().as_secs_f64();
            drop(out);
            seconds
        };
        run();
        median((0..rounds).map(|_| run()).collect())
    };
    let two_d = |x: Tensor<B, 2>| x.unsqueeze::<3>();
    let mut parts = Vec::new();
    let mut part = |name, seconds, flops| parts.push(Part { name, seconds, flops });

    part(
        "whole forward",
        time(&|| model.forward(input_ids.clone())),
        0.0,
    );
    part(
        "embedding",
        time(&|| m.embed_tokens.forward(input_ids.clone())),
        0.0,
    );
    part(
        "RoPE tables + causal mask",
        time(&|| {
            let pe = rope.forward::<B>(seq, &device);
            let _mask = causal_mask::<B>(seq, None, &device);
            pe.cos
        }),
        0.0,
    );
    part(
        "RMSNorm x2 per layer",
        2.0 * layers * time(&|| layer.input_layernorm.forward(embedded.clone())),
        0.0,
    );
    let inputs = || AttentionInputs {
        position_embeddings: Some(&pe),
        attention_mask: Some(&mask),
        cache: None,
    };
    part(
        "attention (projections + core)",
        layers * time(&|| layer.self_attn.forward(normed.clone(), inputs())),
        layers * tokens * 2.0 * (h * (q + 2.0 * kv) + q * h)
            + layers
                * batch as f64
                * heads
                * 4.0
                * (seq * seq) as f64
                * config.core.head_dim as f64,
    );
    part(
        "  of which the core (eager_attention)",
        layers
            * time(&|| {
                let qkv = [q_in.clone(), k_in.clone(), v_in.clone()];
                eager_attention(&spec, qkv, inputs())
            }),
        layers * batch as f64 * heads * 4.0 * (seq * seq) as f64 * config.core.head_dim as f64,
    );
    // The core's steps on tensors of their shapes: `[b, KV, n_rep, s, d]` against the KV heads.
    let (kv_heads, n_rep, d) = (
        spec.num_key_value_heads,
        heads as usize / spec.num_key_value_heads,
        spec.head_dim,
    );
    let grouped = [batch, kv_heads, n_rep, seq, d];
    let qg = Tensor::<B, 5>::random(grouped, Distribution::Default, &device);
    let kg = Tensor::<B, 5>::random([batch, kv_heads, 1, seq, d], Distribution::Default, &device)
        .expand(grouped);
    let kg_t = Tensor::<B, 5>::random([batch, kv_heads, 1, d, seq], Distribution::Default, &device)
        .expand([batch, kv_heads, n_rep, d, seq]);
    let scores = Tensor::<B, 5>::random(
        [batch, kv_heads, n_rep, seq, seq],
        Distribution::Default,
        &device,
    );
    let core_flops = layers * batch as f64 * heads * 2.0 * (seq * seq) as f64 * d as f64;
    let five = |x: Tensor<B, 5>| {
        let last = x.dims()[4];
        x.reshape([batch * kv_heads * n_rep, seq, last])
    };
    part(
        "    scores q @ k^T",
        layers * time(&|| five(qg.clone().matmul(kg_t.clone()))),
        core_flops,
    );
    part(
        "    softmax over the keys",
        layers * time(&|| five(burn::tensor::activation::softmax(scores.clone(), 4))),
        0.0,
    );
    part(
        "    weights @ v",
        layers * time(&|| five(scores.clone().matmul(kg.clone()))),
        core_flops,
    );
    // Burn's own attention op (`module::attention`: Flex runs a fused kernel, NdArray the same
    // steps as above), on the grouped heads expanded.
    let qh = qg.clone().reshape([batch, heads as usize, seq, d]);
    let kh = kg.clone().reshape([batch, heads as usize, seq, d]);
    let mask4 = mask.clone();
    part(
        "  Burn's module::attention, same shapes",
        layers
            * time(&|| {
                burn::tensor::module::attention(
                    qh.clone(),
                    kh.clone(),
                    kh.clone(),
                    Some(mask4.clone()),
                    None,
                    Default::default(),
                )
                .reshape([batch, heads as usize * seq, d])
            }),
        2.0 * core_flops,
    );
    part(
        "MoE block (all below)",
        layers * time(&|| layer.mlp.forward(normed.clone())),
        layers * tokens * 2.0 * (h * config.num_experts as f64 + 3.0 * h * (active + shared) + h),
    );
    part(
        "  router (logits, softmax, top-k)",
        layers * time(&|| two_d(block.gate.forward(flat.clone()).top_k_weights)),
        layers * tokens * 2.0 * h * config.num_experts as f64,
    );
    part(
        "  routed experts",
        layers
            * time(&|| {
                two_d(block.experts.forward(
                    flat.clone(),
                    routing.top_k_index.clone(),
                    routing.top_k_weights.clone(),
                ))
            }),
        layers * tokens * 2.0 * 3.0 * h * active,
    );
    part(
        "  shared expert",
        layers * time(&|| two_d(block.shared_expert.forward(flat.clone()))),
        layers * tokens * 2.0 * 3.0 * h * shared,
    );
    part(
        "final norm",
        time(&|| m.norm.forward(embedded.clone())),
        0.0,
    );
    let lm_flops = tokens * 2.0 * h * config.core.vocab_size as f64;
    match &model.lm_head {
        Some(lm_head) => part(
            "lm_head",
            time(&|| lm_head.forward(embedded.clone())),
            lm_flops,
        ),
        None => part("lm_head (tied)", 0.0, lm_flops),
    }
    parts
}

/// Prints one model's [`breakdown`] as a Markdown table.
pub fn print_breakdown(title: &str, parts: &[Part]) {
    let whole = parts.first().map_or(f64::NAN, |p| p.seconds);
    println!("\nWhere the forward's time goes ({title}; medians, summed over the layers):\n");
    let mut table = Table::new([
        ("part", 0),
        ("ms", 0),
        ("% of forward", 0),
        ("GFLOP", 0),
        ("GFLOP/s", 0),
    ]);
    for part in parts {
        let rate = if part.flops > 0.0 && part.seconds > 0.0 {
            format!("{:.1}", part.flops / part.seconds / 1e9)
        } else {
            "-".into()
        };
        table.row(vec![
            part.name.to_string(),
            format!("{:.1}", part.seconds * 1e3),
            format!("{:.0}", 100.0 * part.seconds / whole),
            if part.flops > 0.0 {
                format!("{:.2}", part.flops / 1e9)
            } else {
                "-".into()
            },
            rate,
        ]);
    }
    print!("{}", table.markdown());
}
