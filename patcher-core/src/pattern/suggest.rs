//! "Did you mean ...?" suggestions for names (parameters, class names).
//!
//! Bounded whatever the input: names longer than [`MAX_NAME_CHARS`] are neither suggested nor
//! given suggestions, a candidate whose length alone rules it out is skipped without computing
//! a distance, and the distances computed for one call cost at most [`BUDGET`] cells of the
//! Levenshtein table; past it, the best candidate so far is returned.

/// Names longer than this (in characters) take no part in suggestions.
pub(crate) const MAX_NAME_CHARS: usize = 256;

/// The most Levenshtein table cells (`len(a) * len(b)`) one call computes: thousands of
/// ordinary keys, a few milliseconds.
pub(crate) const BUDGET: usize = 4_000_000;

/// The candidate most similar to `name` (normalized Levenshtein), if at least `min_similarity`
/// (0.0 to 1.0). Ties go to the earlier candidate; `name` itself is never suggested, and only
/// one of `candidates` is ever returned.
pub fn closest_name<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    min_similarity: f64,
) -> Option<&'a str> {
    let n = name.chars().count();
    if n > MAX_NAME_CHARS {
        return None;
    }
    let mut spent = 0usize;
    let mut best: Option<(&'a str, f64)> = None;
    for candidate in candidates {
        // Bytes bound chars from above: a long candidate is skipped without counting.
        if candidate == name || candidate.len() > 4 * MAX_NAME_CHARS {
            continue;
        }
        let m = candidate.chars().count();
        let longest = n.max(m);
        if m > MAX_NAME_CHARS || longest == 0 {
            continue;
        }
        // The distance is at least the length difference: the best score this one can reach.
        let reachable = 1.0 - n.abs_diff(m) as f64 / longest as f64;
        if reachable < min_similarity || best.is_some_and(|(_, s)| reachable <= s) {
            continue;
        }
        spent = spent.saturating_add(n.max(1) * m.max(1));
        if spent > BUDGET {
            break;
        }
        let score = strsim::normalized_levenshtein(name, candidate);
        if score >= min_similarity && best.is_none_or(|(_, s)| score > s) {
            best = Some((candidate, score));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_a_near_candidate_only() {
        let candidates = ["model.norm.weight", "lm_head.weight"];
        assert_eq!(
            closest_name("model.norm.weigth", candidates, 0.8),
            Some("model.norm.weight")
        );
        assert_eq!(closest_name("zzz", candidates, 0.8), None);
        assert_eq!(closest_name("lm_head.weight", candidates, 0.8), None);
    }

    #[test]
    fn long_names_and_many_candidates_are_bounded() {
        let long = "a".repeat(200_000);
        assert_eq!(closest_name(&long, [long.as_str(), "a"], 0.1), None);
        assert_eq!(closest_name("a", [long.as_str()], 0.0), None);
        // 100,000 candidates of 200 chars: the budget stops the scan early.
        let many: Vec<String> = (0..100_000).map(|i| format!("{i:0>200}")).collect();
        let name = format!("{:x>200}", 7);
        let _ = closest_name(&name, many.iter().map(String::as_str), 0.5);
    }
}
