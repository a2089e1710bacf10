//! The KV cache and padding masks, for every decoder family and patch, on every backend:
//! - a left-padded batch against transformers (`tests/fixtures/cache/{family}.safetensors`:
//!   positions from the mask, as `generate` computes them), at every kept token;
//! - greedy decoding through the cache against transformers' `DynamicCache`: the same tokens and
//!   the logits of every step;
//! - cached decoding against a full recompute, and each padded row against its unpadded run.
//!
//! Mixtral's fixture has a sliding window (5) shorter than its prompt and decode (7 + 4); GPT-2's
//! positions are a learned table, indexed from the mask too.

use burn::prelude::*;
use patcher_burn::Loaded;
use patcher_models::auto::FamilyConfig;
use std::collections::BTreeMap;

use patcher_models::common::{
    AttentionLayout, DecoderInputError, FinishReason, GenerateError, GenerationConfig, Outputs,
};
use patcher_models::gpt2::Gpt2LmHeadModel;
use patcher_models::llama::LlamaForCausalLm;
use patcher_models::mixtral::MixtralForCausalLm;
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::Qwen2MoeForCausalLm;
use patcher_models::replacements::Patch;

use crate::common::{fixtures, read_file, HostF32, MOE_PATCHES};

/// Against transformers (its eager attention, f32).
const TOLERANCE: f32 = 1e-4;
/// Against our own recompute: the same operations on other shapes.
const SELF_TOLERANCE: f32 = 1e-5;

/// A fixture family loaded with `patch` through the real loader.
fn load<B: Backend, M: FamilyModel<B> + CausalLm<B>>(
    dir: &str,
    patch: Patch,
    device: &B::Device,
) -> M {
    let path = fixtures().join(dir);
    let config = M::Config::from_file(&path.join("config.json")).unwrap();
    let patcher = patch.patcher::<B, _>(&config).unwrap();
    let loaded: Loaded<M> = Pretrained::from_path(&path)
        .patcher(&patcher)
        .load::<M>(device)
        .unwrap_or_else(|e| panic!("{dir} {patch}: {e}"));
    loaded.model
}

fn ints<B: Backend>(t: &HostF32, device: &B::Device) -> Tensor<B, 2, Int> {
    let values: Vec<i64> = t.data.iter().map(|&v| v as i64).collect();
    Tensor::from_data(TensorData::new(values, [t.shape[0], t.shape[1]]), device)
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.to_data().convert::<f32>().iter::<f32>().collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Row `row`'s logits at positions `from..` of `[batch, seq, vocab]` values.
fn rows(values: &[f32], [_, seq, vocab]: [usize; 3], row: usize, from: usize) -> &[f32] {
    &values[(row * seq + from) * vocab..(row + 1) * seq * vocab]
}

/// Every check of the module for one family and patch.
fn check<B: Backend, M: FamilyModel<B> + CausalLm<B>>(dir: &str, patch: Patch, device: &B::Device) {
    let model: M = load(dir, patch, device);
    let reference = read_file(&fixtures().join(format!("cache/{dir}.safetensors")));
    let ids = ints::<B>(&reference["input_ids"], device);
    let mask = ints::<B>(&reference["attention_mask"], device);
    let [batch, seq] = ids.dims();
    // Row 0 is whole; row 1 starts with the padding.
    let row_1 = host(mask.clone().narrow(0, 1, 1).float());
    let pad = row_1.iter().take_while(|&&m| m == 0.0).count();
    assert!(pad > 0, "the reference pads row 1");
    let label = format!("{dir} patch={patch}");

    // 1. The padded batch against transformers, at every kept token.
    let logits = model.forward_masked(ids.clone(), mask.clone()).unwrap();
    let shape = logits.dims();
    let vocab = shape[2];
    let ours = host(logits);
    let theirs = &reference["logits"].data;
    let diff = max_diff(rows(&ours, shape, 0, 0), rows(theirs, shape, 0, 0)).max(max_diff(
        rows(&ours, shape, 1, pad),
        rows(theirs, shape, 1, pad),
    ));
    println!("{label}: padded batch vs transformers {diff:.2e}");
    assert!(diff <= TOLERANCE, "{label}: padded batch {diff}");

    // 2. Each padded row equals its unpadded run.
    let unpadded = ids.clone().narrow(0, 1, 1).narrow(1, pad, seq - pad);
    let alone = host(model.forward(unpadded));
    let diff = max_diff(&alone, rows(&ours, shape, 1, pad));
    println!("{label}: padded row vs unpadded run {diff:.2e}");
    assert!(diff <= SELF_TOLERANCE, "{label}: padded row {diff}");

    // 3. Greedy decoding through the cache against transformers' steps, and steps against a full
    // recompute of the padded sequence so far.
    let generated = ints::<B>(&reference["generated"], device);
    let steps = generated.dims()[1];
    let step_logits = &reference["step_logits"].data;
    let mut cache = KvCache::new();
    let prefill = model
        .forward_cached(ids.clone(), Some(mask.clone()), &mut cache)
        .unwrap();
    let mut last = prefill.narrow(1, seq - 1, 1);
    let (mut all_ids, mut all_mask) = (ids, mask);
    for step in 0..=steps {
        let expected: Vec<f32> = (0..batch)
            .flat_map(|b| {
                let at = (b * (steps + 1) + step) * vocab;
                step_logits[at..at + vocab].to_vec()
            })
            .collect();
        let ours = host(last.clone());
        let diff = max_diff(&ours, &expected);
        println!("{label}: step {step} vs transformers {diff:.2e}");
        assert!(diff <= TOLERANCE, "{label}: step {step} {diff}");
        // A few steps only: each length is new shapes, which wgpu compiles kernels for.
        if [0, 1, steps / 2, steps].contains(&step) {
            let recompute = model.forward_masked(all_ids.clone(), all_mask.clone());
            let len = all_ids.dims()[1];
            let recompute = host(recompute.unwrap().narrow(1, len - 1, 1));
            let diff = max_diff(&ours, &recompute);
            assert!(
                diff <= SELF_TOLERANCE,
                "{label}: step {step} vs recompute {diff}"
            );
        }
        if step == steps {
            break;
        }
        let token = generated.clone().narrow(1, step, 1);
        let argmax = host(last.clone().argmax(2).float());
        let expected_token = host(token.clone().float());
        assert_eq!(
            argmax, expected_token,
            "{label}: greedy token of step {step}"
        );
        all_ids = Tensor::cat(vec![all_ids, token.clone()], 1);
        all_mask = Tensor::cat(vec![all_mask, token.ones_like()], 1);
        let out = model
            .forward_cached(token, Some(all_mask.clone()), &mut cache)
            .unwrap();
        last = out;
    }
    assert_eq!(cache.seq_len(), seq + steps);

    // 4. `generate` on the padded prompts: transformers' greedy tokens (for every patch), with
    // and without a repetition penalty; streamed as chosen; EOS tokens and stop sequences end a
    // sequence; seeded sampling. The loop is the same whatever the classes: the rest once per
    // family (each decode length is new shapes, which wgpu compiles kernels for).
    let all = patch == Patch::NONE;
    generation(
        &model,
        &label,
        &reference,
        ids_and_mask(&reference, device),
        all,
    );

    // 5. Without padding, a cached decode equals the full forward.
    let prompt = all_ids.clone().narrow(0, 0, 1);
    let total = prompt.dims()[1];
    let mut cache = KvCache::new();
    let split = total - 3;
    let mut outs = vec![model
        .forward_cached(prompt.clone().narrow(1, 0, split), None, &mut cache)
        .unwrap()];
    for t in split..total {
        outs.push(
            model
                .forward_cached(prompt.clone().narrow(1, t, 1), None, &mut cache)
                .unwrap(),
        );
    }
    let diff = max_diff(&host(Tensor::cat(outs, 1)), &host(model.forward(prompt)));
    println!("{label}: cached decode vs full forward {diff:.2e}");
    assert!(diff <= SELF_TOLERANCE, "{label}: cached decode {diff}");
}

fn ids_and_mask<B: Backend>(
    reference: &BTreeMap<String, HostF32>,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let ids = ints::<B>(&reference["input_ids"], device);
    (ids, ints::<B>(&reference["attention_mask"], device))
}

fn rows_of(t: &HostF32) -> Vec<Vec<i64>> {
    t.data
        .chunks(t.shape[1])
        .map(|r| r.iter().map(|&v| v as i64).collect())
        .collect()
}

fn generation<B: Backend, M: CausalLm<B>>(
    model: &M,
    label: &str,
    reference: &BTreeMap<String, HostF32>,
    (ids, mask): (Tensor<B, 2, Int>, Tensor<B, 2, Int>),
    all: bool,
) {
    let greedy = rows_of(&reference["generated"]);
    let steps = greedy[0].len();
    let config = GenerationConfig::default().with_max_new_tokens(steps);
    let mut streamed = vec![Vec::new(); greedy.len()];
    let out = model
        .generate_streaming(
            ids.clone(),
            Some(mask.clone()),
            &config,
            &mut |row, token| streamed[row].push(token),
        )
        .unwrap();
    assert_eq!(out.tokens, greedy, "{label}: greedy tokens");
    assert_eq!(streamed, greedy, "{label}: streamed tokens");
    assert!(out.finish.iter().all(|f| *f == FinishReason::Length));
    if !all {
        return;
    }
    let penalized = config.clone().with_repetition_penalty(1.5);
    let out = model
        .generate(ids.clone(), Some(mask.clone()), &penalized)
        .unwrap();
    let expected = rows_of(&reference["generated_penalized"]);
    assert_eq!(
        out.tokens, expected,
        "{label}: tokens with a repetition penalty"
    );

    // Row 0's second token as EOS: each row stops at its first occurrence, or goes on.
    let eos = greedy[0][1];
    let with_eos = config.clone().with_eos_token_ids(vec![eos]);
    let out = model
        .generate(ids.clone(), Some(mask.clone()), &with_eos)
        .unwrap();
    for (row, tokens) in greedy.iter().enumerate() {
        let end = tokens.iter().position(|&t| t == eos);
        let expected = &tokens[..end.map_or(steps, |i| i + 1)];
        let reason = end.map_or(FinishReason::Length, |_| FinishReason::Eos);
        assert_eq!(
            (&out.tokens[row][..], out.finish[row]),
            (expected, reason),
            "{label}: {row}"
        );
    }
    // Row 1's tokens 1..3 as a stop sequence.
    let stop = config
        .clone()
        .with_stop_sequences(vec![greedy[1][1..3].to_vec()]);
    let out = model
        .generate(ids.clone(), Some(mask.clone()), &stop)
        .unwrap();
    assert_eq!(
        (&out.tokens[1][..], out.finish[1]),
        (&greedy[1][..3], FinishReason::StopSequence)
    );

    // Sampling: the same seed, the same tokens; top-1 sampling is greedy.
    let sampling = config.clone().with_temperature(0.8).with_seed(3);
    let a = model
        .generate(ids.clone(), Some(mask.clone()), &sampling)
        .unwrap();
    let b = model
        .generate(ids.clone(), Some(mask.clone()), &sampling)
        .unwrap();
    assert_eq!(a, b, "{label}: seeded sampling");
    let top_1 = config.clone().with_top_k(1).with_seed(5);
    let out = model.generate(ids, Some(mask), &top_1).unwrap();
    assert_eq!(out.tokens, greedy, "{label}: top-1 sampling");
}

/// Wrong inputs are typed errors, and leave the cache as it was.
fn typed_errors<B: Backend>(device: &B::Device) {
    let model: LlamaForCausalLm<B> = load("llama", Patch::NONE, device);
    let ids = Tensor::<B, 2, Int>::from_data([[3, 4, 5], [6, 7, 8]], device);
    let mut cache = KvCache::new();
    model.forward_cached(ids.clone(), None, &mut cache).unwrap();
    let short = Tensor::<B, 2, Int>::ones([2, 3], device);
    let next = ids.clone().narrow(1, 0, 1);
    let err = model
        .forward_cached(next.clone(), Some(short), &mut cache)
        .unwrap_err();
    assert_eq!(
        err,
        DecoderInputError::MaskShape { found: [2, 3], expected: [2, 4] }
    );
    assert!(
        err.to_string()
            .contains("[batch, cached positions + new tokens]"),
        "{err}"
    );
    let err = model
        .forward_cached(next.narrow(0, 0, 1), None, &mut cache)
        .unwrap_err();
    assert_eq!(err, DecoderInputError::CacheBatch { cached: 2, batch: 1 });
    assert_eq!(cache.seq_len(), 3);
}

macro_rules! cache_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn llama() {
            for patch in [Patch::NONE, Patch::fused_qkv()] {
                check::<B, LlamaForCausalLm<B>>("llama", patch, &$device);
            }
        }

        #[test]
        fn qwen2_moe() {
            for patch in MOE_PATCHES {
                check::<B, Qwen2MoeForCausalLm<B>>("qwen2_moe", patch, &$device);
            }
        }

        #[test]
        fn mixtral_sliding_window() {
            for patch in MOE_PATCHES {
                check::<B, MixtralForCausalLm<B>>("mixtral", patch, &$device);
            }
        }

        #[test]
        fn gpt2_learned_positions() {
            check::<B, Gpt2LmHeadModel<B>>("gpt2", Patch::NONE, &$device);
        }

        #[test]
        fn wrong_inputs_are_typed_errors() {
            typed_errors::<B>(&$device);
        }
    };
}

crate::common::on_every_backend!(cache_tests);

#[test]
fn generate_refuses_prompts_the_config_or_positions_cannot_hold() {
    // transformers raises on a prompt as long as max_length without max_new_tokens; GPT-2's
    // learned positions (64) bound prompt + new tokens, checked before any forward.
    type B = burn::backend::NdArray;
    let device = Default::default();
    let model: Gpt2LmHeadModel<B> = load("gpt2", Patch::NONE, &device);
    let ids =
        |n: usize| Tensor::<B, 2, Int>::from_data(TensorData::new(vec![5i64; n], [1, n]), &device);
    let config = GenerationConfig::default();
    let err = model
        .generate(ids(config.max_length), None, &config)
        .unwrap_err();
    assert!(
        matches!(
            err,
            GenerateError::PromptAtMaxLength { prompt: 20, max_length: 20 }
        ),
        "{err}"
    );
    let config = config.with_max_new_tokens(60);
    let err = model.generate(ids(6), None, &config).unwrap_err();
    let expected = GenerateError::TooManyPositions {
        prompt: 6,
        new_tokens: 60,
        positions: 65,
        max_positions: 64,
    };
    assert_eq!(err.to_string(), expected.to_string());
    let empty = Tensor::<B, 2, Int>::from_data(TensorData::new(Vec::<i64>::new(), [1, 0]), &device);
    let err = model.generate(empty, None, &config).unwrap_err();
    assert!(matches!(err, GenerateError::EmptyPrompt), "{err}");
    // 5 + 60 needs 64 positions: the last token is never fed back.
    let out = model.generate(ids(5), None, &config).unwrap();
    assert_eq!(out.tokens[0].len(), 60);
}

#[test]
fn logits_to_keep_gives_the_last_positions_logits() {
    // What `generate` asks for at each step: the head on the last positions only, the same
    // logits as the full forward's there.
    type B = burn::backend::NdArray;
    let device = Default::default();
    let model: LlamaForCausalLm<B> = load("llama", Patch::NONE, &device);
    let ids = Tensor::<B, 2, Int>::from_data([[3i64, 9, 27, 81, 5, 7]], &device);
    let layout = AttentionLayout::contiguous(1, 6, 0);
    let outputs = Outputs::logits().keep_last_logits(2);
    let kept = model
        .forward_layout(ids.clone(), &layout, None, outputs)
        .logits;
    let full = model.forward(ids);
    assert_eq!(kept.dims(), [1, 2, 128]);
    assert_eq!(host(kept), host(full.narrow(1, 4, 2)));
}
