//! [`ModulePattern`]: a module path with `*` for an index, the way tensor-parallel plans and
//! device maps name parts of a model.

use regex::Regex;

/// A module path (`layers.*.mlp.up_proj`: names, digits, `_`, `.`, and `*` for any index),
/// matched at whole names against the end of a path: `layers.*` matches `model.layers.3`, not
/// `model.sublayers.3` or `model.layers.3.mlp`.
///
/// ```
/// use patcher_core::plan::ModulePattern;
///
/// let layers = ModulePattern::new("layers.*")?;
/// assert!(layers.matches_module("model.layers.3"));
/// assert!(!layers.matches_module("model.layers.3.mlp"));
/// // A parameter of the module itself, not of its children:
/// assert!(layers.matches_param("model.layers.3.scale"));
/// assert!(!layers.matches_param("model.layers.3.mlp.weight"));
/// assert!(ModulePattern::new("layers.(0)").is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone)]
pub struct ModulePattern {
    pattern: String,
    /// The module, then an optional `.leaf` (group 1).
    regex: Regex,
}

impl ModulePattern {
    /// The pattern, or an error holding it back when it has other characters or is empty.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '*');
        if pattern.is_empty() || !pattern.chars().all(valid) {
            return Err(pattern.to_string());
        }
        let body = regex::escape(pattern).replace(r"\*", r"\d+");
        let regex =
            Regex::new(&format!(r"(?:^|\.){body}(\.[^.]+)?$")).map_err(|_| pattern.to_string())?;
        Ok(Self { pattern: pattern.to_string(), regex })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `path` is a module the pattern names.
    pub fn matches_module(&self, path: &str) -> bool {
        self.regex
            .captures(path)
            .is_some_and(|c| c.get(1).is_none())
    }

    /// Whether `key` is a module the pattern names or one of its own parameters.
    pub fn matches_param(&self, key: &str) -> bool {
        self.regex.is_match(key)
    }
}
