//! Preprocessing of target patterns (they are replacement text, and become sources on reverse).
//!
//! This is transformers' `process_target_pattern` / `process_source_pattern`, which keep a
//! transform reversible: a target such as `^encoder` or `layers.(\d+).norm` is turned into plain
//! replacement text, remembering the `(...)` group so the reversed transform can match it again.

use std::sync::OnceLock;

use regex::Regex;

/// Target pattern as replacement text, and the `(...)` group it contained (if any).
///
/// Strips a leading `^` and a trailing `$`, drops `(?...)` groups (lookarounds), unescapes `\.`,
/// and turns the first `(...)` group into `\1`.
///
/// ```
/// use patcher_core::pattern::process_target_pattern;
/// assert_eq!(process_target_pattern("^encoder"), ("encoder".to_string(), None));
/// assert_eq!(
///     process_target_pattern(r"vit\.layers\.(\d+)\.norm"),
///     (r"vit.layers.\1.norm".to_string(), Some(r"(\d+)".to_string())),
/// );
/// ```
pub fn process_target_pattern(pattern: &str) -> (String, Option<String>) {
    let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
    let pattern = pattern.strip_suffix('$').unwrap_or(pattern);
    let pattern = lookaround().replace_all(pattern, "");
    let pattern = pattern.replace(r"\.", ".");
    match group().find(&pattern) {
        Some(m) => {
            let captured = m.as_str().to_string();
            (pattern.replacen(&captured, r"\1", 1), Some(captured))
        }
        None => (pattern, None),
    }
}

/// Source pattern with the anchors of its paired (original) target: a target that started with
/// `^` (or ended with `$`) anchors the source the same way, so the reversed pair is symmetric.
///
/// ```
/// use patcher_core::pattern::process_source_pattern;
/// assert_eq!(process_source_pattern("decoder", "^encoder"), "^decoder");
/// assert_eq!(process_source_pattern("^decoder", "^encoder"), "^decoder");
/// assert_eq!(process_source_pattern("a", "b$"), "a$");
/// ```
pub fn process_source_pattern(source: &str, target: &str) -> String {
    let mut out = source.to_string();
    if target.starts_with('^') && !out.starts_with('^') {
        out.insert(0, '^');
    }
    if target.ends_with('$') && !out.ends_with('$') {
        out.push('$');
    }
    out
}

// The two patterns below are constants checked by the unit tests; compiling them cannot fail.
fn lookaround() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // Python's `\(\?.+?\)?\)`: a `(?...)` group, non-greedy, with at most one nested `)`.
    RE.get_or_init(|| Regex::new(r"\(\?.+?\)?\)").expect("constant regex"))
}

fn group() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\(.+?\)").expect("constant regex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_lookarounds_and_anchors() {
        let (p, g) = process_target_pattern(r"^model(?!\.(language_model|visual))$");
        assert_eq!(p, "model");
        assert_eq!(g, None);
    }

    #[test]
    fn first_group_becomes_backreference() {
        let (p, g) = process_target_pattern(r"(encoder|decoder)\.layers");
        assert_eq!(p, r"\1.layers");
        assert_eq!(g.as_deref(), Some("(encoder|decoder)"));
    }
}
