//! Choosing the next token from one row of logits, as transformers' logits processors and
//! warpers do, in their order: the repetition penalty, then (sampling) temperature, top-k and
//! top-p, then the most likely token (greedy) or a draw from the softmax.

use rand::rngs::StdRng;
use rand::Rng;

use super::GenerationConfig;

/// transformers' `RepetitionPenaltyLogitsProcessor`: the logit of every token in `seen` (the
/// prompt, its padding included, and the tokens generated) divided by `penalty` where positive,
/// multiplied where negative.
pub(crate) fn repetition_penalty(logits: &mut [f32], seen: &[i64], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut done = vec![false; logits.len()];
    for &token in seen {
        let Some(slot) = usize::try_from(token).ok().filter(|&t| t < logits.len()) else {
            continue;
        };
        if !std::mem::replace(&mut done[slot], true) {
            let l = logits[slot];
            logits[slot] = if l < 0.0 { l * penalty } else { l / penalty };
        }
    }
}

/// The next token of one sequence from its (penalised) logits.
pub(crate) fn next_token(logits: &mut [f32], config: &GenerationConfig, rng: &mut StdRng) -> i64 {
    if !config.do_sample {
        return argmax(logits) as i64;
    }
    if config.temperature != 1.0 {
        logits.iter_mut().for_each(|l| *l /= config.temperature);
    }
    if let Some(k) = config.top_k.filter(|&k| k > 0 && k < logits.len()) {
        top_k(logits, k);
    }
    if config.top_p < 1.0 {
        top_p(logits, config.top_p);
    }
    sample(logits, rng) as i64
}

/// The first index of the largest value (`torch.argmax`'s choice among ties).
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// transformers' `TopKLogitsWarper`: logits below the `k`-th largest become `-inf` (ties with it
/// stay).
fn top_k(logits: &mut [f32], k: usize) {
    let mut sorted = logits.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let kth = sorted[k - 1];
    logits
        .iter_mut()
        .filter(|l| **l < kth)
        .for_each(|l| *l = f32::NEG_INFINITY);
}

/// transformers' `TopPLogitsWarper`: in ascending order of probability, the tokens whose
/// cumulative probability is at most `1 - p` become `-inf`; the most likely token always stays.
fn top_p(logits: &mut [f32], p: f32) {
    let probs = softmax(logits);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    let mut cumulative = 0.0f32;
    for &i in &order[..order.len() - 1] {
        cumulative += probs[i];
        if cumulative <= 1.0 - p {
            logits[i] = f32::NEG_INFINITY;
        }
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// A draw from `softmax(logits)`.
fn sample(logits: &[f32], rng: &mut StdRng) -> usize {
    let probs = softmax(logits);
    let mut u: f32 = rng.random();
    for (i, p) in probs.iter().enumerate() {
        if u < *p {
            return i;
        }
        u -= p;
    }
    // Rounding left `u` past the last token with a probability: the most likely one.
    argmax(&probs)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn penalty_divides_positive_and_multiplies_negative_logits_once() {
        let mut logits = [2.0, -2.0, 1.0];
        repetition_penalty(&mut logits, &[0, 1, 0, 7], 2.0);
        assert_eq!(logits, [1.0, -4.0, 1.0]);
    }

    #[test]
    fn top_k_and_top_p_keep_the_likely_tokens() {
        let mut logits = [1.0, 3.0, 2.0, 3.0];
        top_k(&mut logits, 2);
        assert_eq!(logits, [f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY, 3.0]);
        // Probabilities about [0.64, 0.24, 0.09, 0.03]: top-p 0.7 keeps the first two.
        let mut logits = [3.0, 2.0, 1.0, 0.0];
        top_p(&mut logits, 0.7);
        assert_eq!(&logits[..2], &[3.0, 2.0]);
        assert!(logits[2..].iter().all(|l| *l == f32::NEG_INFINITY));
    }

    #[test]
    fn sampling_is_seeded_and_greedy_takes_the_first_maximum() {
        let config = GenerationConfig::default()
            .with_temperature(1.0)
            .with_top_k(0);
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| next_token(&mut [0.0, 0.1, 0.2, 0.3], &config, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let greedy = GenerationConfig::default();
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(next_token(&mut [1.0, 3.0, 3.0], &greedy, &mut rng), 1);
    }
}
