//! The benchmark checkpoint: a Qwen2-MoE in f32 with the keys transformers saves, filled with
//! deterministic pseudo-random values, generated once and reused while its `bench.key` matches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn_patcher::{save_safetensors, Checkpoint, DType, HostTensor};

use super::Error;

/// Bumped whenever the generated values or layout change, so old folders are regenerated.
const GENERATOR: &str = "load_benchmark generator v1, seed 0x5eed";
const SEED: u64 = 0x5eed;

/// The benchmark model's shape: Qwen2-MoE-like proportions, scaled so the file is easy to make.
pub struct Shape {
    pub vocab: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub moe_inter: usize,
    pub shared_inter: usize,
    pub experts: usize,
    pub top_k: usize,
    pub layers: usize,
}

/// How a generated tensor is filled.
#[derive(Clone, Copy)]
pub enum Fill {
    /// Uniform with standard deviation 0.02 (transformers' `initializer_range`).
    Weight,
    /// `1 +` uniform noise of standard deviation 0.02 (norm weights).
    Norm,
}

impl Shape {
    /// The fixed width, with as many layers as bring the file to at least `size_mb` MB.
    pub fn for_size(size_mb: u64) -> Self {
        let mut shape = Self {
            vocab: 8192,
            hidden: 1024,
            heads: 16,
            kv_heads: 4,
            head_dim: 64,
            moe_inter: 512,
            shared_inter: 2048,
            experts: 16,
            top_k: 2,
            layers: 1,
        };
        let fixed = shape.bytes_with_layers(0);
        let per_layer = shape.bytes_with_layers(1) - fixed;
        let wanted = size_mb * 1_000_000;
        shape.layers = wanted.saturating_sub(fixed).div_ceil(per_layer).max(1) as usize;
        shape
    }

    pub fn bytes_with_layers(&self, layers: usize) -> u64 {
        let one = Self { layers, ..*self };
        one.tensors()
            .iter()
            .map(|(_, shape, _)| shape.iter().product::<usize>() as u64 * 4)
            .sum()
    }

    /// Every tensor of the checkpoint, as transformers 5.23 saves a `Qwen2MoeForCausalLM`.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, Fill)> {
        let (h, q, kv) = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
        );
        let mut out = vec![
            (
                "model.embed_tokens.weight".into(),
                vec![self.vocab, h],
                Fill::Weight,
            ),
            ("model.norm.weight".into(), vec![h], Fill::Norm),
            ("lm_head.weight".into(), vec![self.vocab, h], Fill::Weight),
        ];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            let mut push = |name: String, shape: Vec<usize>, fill| out.push((name, shape, fill));
            push(format!("{p}.input_layernorm.weight"), vec![h], Fill::Norm);
            push(
                format!("{p}.post_attention_layernorm.weight"),
                vec![h],
                Fill::Norm,
            );
            for (proj, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                push(
                    format!("{p}.self_attn.{proj}.weight"),
                    vec![rows, h],
                    Fill::Weight,
                );
                push(
                    format!("{p}.self_attn.{proj}.bias"),
                    vec![rows],
                    Fill::Weight,
                );
            }
            push(
                format!("{p}.self_attn.o_proj.weight"),
                vec![h, q],
                Fill::Weight,
            );
            push(
                format!("{p}.mlp.gate.weight"),
                vec![self.experts, h],
                Fill::Weight,
            );
            for e in 0..self.experts {
                let x = format!("{p}.mlp.experts.{e}");
                push(
                    format!("{x}.gate_proj.weight"),
                    vec![self.moe_inter, h],
                    Fill::Weight,
                );
                push(
                    format!("{x}.up_proj.weight"),
                    vec![self.moe_inter, h],
                    Fill::Weight,
                );
                push(
                    format!("{x}.down_proj.weight"),
                    vec![h, self.moe_inter],
                    Fill::Weight,
                );
            }
            let s = format!("{p}.mlp.shared_expert");
            push(
                format!("{s}.gate_proj.weight"),
                vec![self.shared_inter, h],
                Fill::Weight,
            );
            push(
                format!("{s}.up_proj.weight"),
                vec![self.shared_inter, h],
                Fill::Weight,
            );
            push(
                format!("{s}.down_proj.weight"),
                vec![h, self.shared_inter],
                Fill::Weight,
            );
            push(
                format!("{p}.mlp.shared_expert_gate.weight"),
                vec![1, h],
                Fill::Weight,
            );
        }
        out
    }

    /// `config.json`, in the form transformers 5.23's `save_pretrained` writes for Qwen2-MoE.
    pub fn config_json(&self) -> String {
        let layer_types = vec!["\"full_attention\""; self.layers].join(", ");
        format!(
            r#"{{
  "architectures": ["Qwen2MoeForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "decoder_sparse_step": 1,
  "dtype": "float32",
  "eos_token_id": 2,
  "head_dim": {head_dim},
  "hidden_act": "silu",
  "hidden_size": {hidden},
  "initializer_range": 0.02,
  "intermediate_size": {shared_inter},
  "layer_types": [{layer_types}],
  "max_position_embeddings": 4096,
  "max_window_layers": 28,
  "mlp_only_layers": [],
  "model_type": "qwen2_moe",
  "moe_intermediate_size": {moe_inter},
  "norm_topk_prob": false,
  "num_attention_heads": {heads},
  "num_experts": {experts},
  "num_experts_per_tok": {top_k},
  "num_hidden_layers": {layers},
  "num_key_value_heads": {kv_heads},
  "output_router_logits": false,
  "pad_token_id": null,
  "qkv_bias": true,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {{"rope_theta": 1000000.0, "rope_type": "default"}},
  "router_aux_loss_coef": 0.001,
  "shared_expert_intermediate_size": {shared_inter},
  "sliding_window": 0,
  "tie_word_embeddings": false,
  "transformers_version": "5.23.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": {vocab}
}}
"#,
            head_dim = self.head_dim,
            hidden = self.hidden,
            shared_inter = self.shared_inter,
            moe_inter = self.moe_inter,
            heads = self.heads,
            experts = self.experts,
            top_k = self.top_k,
            layers = self.layers,
            kv_heads = self.kv_heads,
            vocab = self.vocab,
        )
    }

    pub fn describe(&self) -> String {
        format!(
            "Qwen2-MoE f32: {} layer(s), hidden {}, {} heads / {} KV heads, {} experts x {} (top-{}), \
             shared expert {}, vocab {}",
            self.layers,
            self.hidden,
            self.heads,
            self.kv_heads,
            self.experts,
            self.moe_inter,
            self.top_k,
            self.shared_inter,
            self.vocab
        )
    }
}

/// SplitMix64: a fast, well-mixed deterministic generator.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// FNV-1a, to give every tensor its own stream (independent of generation order).
pub fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325 ^ SEED, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The little-endian f32 bytes of a tensor of `elements` values.
pub fn fill_bytes(name: &str, elements: usize, fill: Fill) -> Vec<u8> {
    // Uniform on [-a, a] has standard deviation a / sqrt(3).
    let half_width = 0.02 * 3f32.sqrt();
    let offset = match fill {
        Fill::Weight => 0.0,
        Fill::Norm => 1.0,
    };
    let mut rng = SplitMix(name_seed(name));
    let mut bytes = vec![0u8; elements * 4];
    let to_f32 = |bits: u32| offset + half_width * ((bits >> 8) as f32 / (1u32 << 23) as f32 - 1.0);
    let mut pairs = bytes.chunks_exact_mut(8);
    for pair in &mut pairs {
        let r = rng.next();
        pair[..4].copy_from_slice(&to_f32(r as u32).to_le_bytes());
        pair[4..].copy_from_slice(&to_f32((r >> 32) as u32).to_le_bytes());
    }
    let rest = pairs.into_remainder();
    if !rest.is_empty() {
        rest.copy_from_slice(&to_f32(rng.next() as u32).to_le_bytes());
    }
    bytes
}

/// The checkpoint a benchmark runs on: `given` (`--dir`), read and never written (it must hold
/// a `config.json`), or else the generated one of `shape` under the default folder (generated
/// once, then reused).
pub fn benchmark_checkpoint(given: Option<&Path>, shape: &Shape) -> Result<PathBuf, Error> {
    if let Some(dir) = given {
        if !dir.join("config.json").is_file() {
            return Err(format!(
                "{}: no config.json; --dir takes a checkpoint folder (read only)",
                dir.display()
            )
            .into());
        }
        println!("checkpoint: {} (given; read only)", dir.display());
        return Ok(dir.to_path_buf());
    }
    let dir = super::cli::default_checkpoint_dir();
    ensure_checkpoint(&dir, shape)?;
    println!("model: {}", shape.describe());
    Ok(dir)
}

/// Generates the checkpoint in `dir`, or reuses it when its `bench.key` matches `shape`.
pub fn ensure_checkpoint(dir: &Path, shape: &Shape) -> Result<(), Error> {
    let config = shape.config_json();
    let key = format!("{GENERATOR}\n{config}");
    let weights = dir.join("model.safetensors");
    let expected_bytes = shape.bytes_with_layers(shape.layers);
    let reusable = std::fs::read_to_string(dir.join("bench.key")).is_ok_and(|k| k == key)
        && Checkpoint::open(&weights)
            .is_ok_and(|c| c.len() == shape.tensors().len() && tensor_bytes(&c) == expected_bytes);
    if reusable {
        println!("checkpoint: reusing {}", dir.display());
        return Ok(());
    }

    let start = Instant::now();
    std::fs::create_dir_all(dir)?;
    // Invalidate first, so an interrupted generation is never taken for a finished one.
    let _ = std::fs::remove_file(dir.join("bench.key"));
    let specs = shape.tensors();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut generated: Vec<Option<Vec<u8>>> = vec![None; specs.len()];
    std::thread::scope(|scope| {
        let chunks: Vec<_> = generated
            .chunks_mut(specs.len().div_ceil(threads))
            .zip(specs.chunks(specs.len().div_ceil(threads)))
            .map(|(out, specs)| {
                scope.spawn(move || {
                    for (slot, (name, shape, fill)) in out.iter_mut().zip(specs) {
                        *slot = Some(fill_bytes(name, shape.iter().product(), *fill));
                    }
                })
            })
            .collect();
        for handle in chunks {
            handle.join().expect("generator thread panicked");
        }
    });
    let tensors = specs
        .iter()
        .zip(generated)
        .map(|((name, shape, _), bytes)| {
            let bytes = bytes.expect("every tensor was generated");
            (
                name.clone(),
                HostTensor::new(DType::F32, shape.clone(), bytes),
            )
        });
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_safetensors(&weights, tensors, Some(metadata))?;
    std::fs::write(dir.join("config.json"), &config)?;
    std::fs::write(dir.join("bench.key"), &key)?;
    println!(
        "checkpoint: generated {} in {:.1} s",
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn tensor_bytes(checkpoint: &Checkpoint) -> u64 {
    checkpoint.iter().map(|t| t.num_bytes() as u64).sum()
}
