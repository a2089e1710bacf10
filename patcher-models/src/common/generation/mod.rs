//! `generate`, written once on [`CausalLm`](super::CausalLm): prefill the prompt into a
//! [`KvCache`], then one token per step through it, chosen as transformers' `generate` does
//! (repetition penalty, greedy or sampling with temperature, top-k and top-p), until each
//! sequence reaches an EOS token, a stop sequence or the length limit. A left-padded batch
//! decodes together; finished sequences are fed padding while the others go on.

mod config;
mod logits;

use std::time::{SystemTime, UNIX_EPOCH};

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

pub use config::GenerationConfig;

use super::cache::KvCache;
use super::layout::DecoderInputError;
use super::output::Outputs;
use crate::error::ConfigError;

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It generated `max_new_tokens` (or reached `max_length`).
    Length,
    /// It generated an EOS token (the last of its tokens).
    Eos,
    /// Its tokens ended with a stop sequence.
    StopSequence,
}

/// What [`CausalLm::generate`](super::CausalLm::generate) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Per sequence, the new tokens (an EOS token or stop sequence included), no padding.
    pub tokens: Vec<Vec<i64>>,
    /// Per sequence, why it stopped.
    pub finish: Vec<FinishReason>,
}

/// Why `generate` did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The generation config is inconsistent (a non-positive temperature, ...).
    #[error("generation config: {0}")]
    Config(#[from] ConfigError),
    /// The prompt or its mask does not fit the model.
    #[error(transparent)]
    Input(#[from] DecoderInputError),
    /// The prompt has no token (transformers would start from the BOS token: give it).
    #[error("the prompt is empty: give at least one token (the model's BOS token, for one)")]
    EmptyPrompt,
    /// The prompt is as long as `max_length` already, and no `max_new_tokens` is set (an error
    /// in transformers too).
    #[error(
        "the prompt has {prompt} tokens, but max_length is {max_length}: set max_new_tokens \
         (or a larger max_length)"
    )]
    PromptAtMaxLength {
        /// The prompt's length, padding included.
        prompt: usize,
        /// The config's `max_length`.
        max_length: usize,
    },
    /// The prompt and the tokens to generate need more positions than the model has (a learned
    /// position table's rows).
    #[error(
        "the prompt's {prompt} tokens and {new_tokens} new ones need {positions} positions (the \
         last new token is not fed back), more than the model's {max_positions}: shorten the \
         prompt or lower max_new_tokens"
    )]
    TooManyPositions {
        /// The prompt's length, padding included.
        prompt: usize,
        /// The tokens `generate` would add.
        new_tokens: usize,
        /// The positions they need.
        positions: usize,
        /// The model's positions.
        max_positions: usize,
    },
}

/// One cached forward of the model being decoded: `(input_ids, attention_mask, cache, outputs)`
/// to the logits ([`CausalLm::forward_cached`](super::CausalLm::forward_cached)'s step).
pub(crate) type Step<'a, B> = dyn FnMut(
        Tensor<B, 2, Int>,
        Option<Tensor<B, 2, Int>>,
        &mut KvCache<B>,
        Outputs,
    ) -> Result<Tensor<B, 3>, DecoderInputError>
    + 'a;

/// The loop behind [`CausalLm::generate`](super::CausalLm::generate), on a model given by its
/// position limit (`max_positions`) and its cached `step`; `on_token(sequence, token)` sees each
/// token as it is chosen.
pub(crate) fn generate<B: Backend>(
    (max_positions, step): (Option<usize>, &mut Step<'_, B>),
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Option<Tensor<B, 2, Int>>,
    config: &GenerationConfig,
    on_token: &mut dyn FnMut(usize, i64),
) -> Result<Generated, GenerateError> {
    config.validate()?;
    let device = input_ids.device();
    let [batch, prompt_len] = input_ids.dims();
    if prompt_len == 0 || batch == 0 {
        return Err(GenerateError::EmptyPrompt);
    }
    if config.max_new_tokens.is_none() && prompt_len >= config.max_length {
        let max_length = config.max_length;
        return Err(GenerateError::PromptAtMaxLength { prompt: prompt_len, max_length });
    }
    let new_tokens = config.new_tokens(prompt_len);
    // The last token generated is never fed back: it needs no position.
    let positions = prompt_len + new_tokens.saturating_sub(1);
    if let Some(max_positions) = max_positions.filter(|&m| positions > m) {
        let prompt = prompt_len;
        return Err(GenerateError::TooManyPositions {
            prompt,
            new_tokens,
            positions,
            max_positions,
        });
    }
    let ids: Vec<i64> = input_ids
        .to_data()
        .convert::<i64>()
        .to_vec()
        .unwrap_or_default();
    // Every token of each sequence, its padding included, as transformers' penalty sees them.
    let mut seen: Vec<Vec<i64>> = ids.chunks(prompt_len.max(1)).map(<[i64]>::to_vec).collect();
    let pad = (config.pad_token_id)
        .or(config.eos_token_ids.first().copied())
        .unwrap_or(0);
    let seed = config.seed.unwrap_or_else(clock_seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut cache, mut mask, mut input) = (KvCache::new(), attention_mask, input_ids);
    let mut tokens = vec![Vec::new(); batch];
    let mut finish: Vec<Option<FinishReason>> = vec![None; batch];
    for _ in 0..new_tokens {
        // transformers' `logits_to_keep=1`: the head runs on the last position only.
        let outputs = Outputs::logits().keep_last_logits(1);
        let logits = step(input, mask.clone(), &mut cache, outputs)?;
        let vocab = logits.dims()[2];
        let last = logits.reshape([batch, vocab]);
        let mut host: Vec<f32> = last.to_data().convert::<f32>().to_vec().unwrap_or_default();
        let mut next = Vec::with_capacity(batch);
        for (row, logits) in host.chunks_mut(vocab.max(1)).enumerate() {
            if finish[row].is_some() {
                next.push(pad);
                continue;
            }
            logits::repetition_penalty(logits, &seen[row], config.repetition_penalty);
            let token = logits::next_token(logits, config, &mut rng);
            on_token(row, token);
            tokens[row].push(token);
            seen[row].push(token);
            if config.eos_token_ids.contains(&token) {
                finish[row] = Some(FinishReason::Eos);
            } else if config
                .stop_sequences
                .iter()
                .any(|s| tokens[row].ends_with(s))
            {
                finish[row] = Some(FinishReason::StopSequence);
            }
            next.push(token);
        }
        if finish.iter().all(Option::is_some) {
            break;
        }
        input = Tensor::from_data(TensorData::new(next, [batch, 1]), &device);
        mask = mask.map(|m| Tensor::cat(vec![m, Tensor::ones([batch, 1], &device)], 1));
    }
    let finish = finish
        .into_iter()
        .map(|f| f.unwrap_or(FinishReason::Length))
        .collect();
    Ok(Generated { tokens, finish })
}

/// A seed from the clock, when the config names none.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
