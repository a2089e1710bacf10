//! "Did you mean ...?" suggestions for names (parameters, class names).

/// The candidate most similar to `name` (normalized Levenshtein), if at least `min_similarity`
/// (0.0 to 1.0). Ties go to the earlier candidate; `name` itself is never suggested.
pub(crate) fn closest_name<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    min_similarity: f64,
) -> Option<&'a str> {
    let mut best: Option<(&'a str, f64)> = None;
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        let score = strsim::normalized_levenshtein(name, candidate);
        if score >= min_similarity && best.is_none_or(|(_, s)| score > s) {
            best = Some((candidate, score));
        }
    }
    best.map(|(c, _)| c)
}
