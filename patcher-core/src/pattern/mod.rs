//! Key patterns with transformers' semantics, and the natural order of checkpoint keys.
//!
//! A key pattern is a regular expression (Rust [`regex`] syntax) searched **anywhere** in a
//! checkpoint key, with two conveniences taken from transformers 5.x:
//!
//! * `*.` means "any characters, then a dot" (`experts.*.w1.weight` matches
//!   `model.layers.0.experts.12.w1.weight`);
//! * a pattern ending in a letter or digit only matches up to a name boundary, so `weight` does
//!   not match inside `weight_scale_inv`.
//!
//! Unescaped `.` matches any character, as in transformers; `^` anchors to the start of the key.
//! On a match, the matched part of the key is replaced by the target pattern, where `\1` stands
//! for the first `(...)` group of the source.
//!
//! ```
//! use patcher_core::pattern::PatternSet;
//!
//! let set = PatternSet::new(["experts.*.w1.weight", "weight"]).unwrap();
//! let m = set.find("model.layers.0.experts.3.w1.weight").unwrap();
//! assert_eq!(m.index, 0);
//! assert_eq!(m.as_str(), "experts.3.w1.weight");
//! assert!(set.find("q_proj.weight_scale_inv").is_none());
//! ```

mod compile;
mod natural;
mod reverse;
mod suggest;
mod target;

#[cfg(test)]
mod tests;

pub use compile::{PatternMatch, PatternSet};
pub(crate) use natural::saturating_number;
pub use natural::{natural_key_cmp, natural_key_order, NaturalKey};
pub use reverse::reverse_replacement;
pub use suggest::closest_name;
pub use target::{process_source_pattern, process_target_pattern};

/// A key pattern could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is not a valid regular expression for the Rust `regex` crate.
    #[error(
        "invalid key pattern `{pattern}`: {message}\nKey patterns use Rust `regex` syntax: \
         lookaround (`(?!...)`, `(?<=...)`) and backreferences are not supported; escape literal \
         characters such as `(`, `[` or `+` with a backslash"
    )]
    InvalidRegex {
        /// The pattern as given.
        pattern: String,
        /// The regex compiler's message.
        message: String,
    },
    /// A pattern is the empty string, which matches every key.
    #[error(
        "key pattern #{position} (counting from 0) is empty; an empty pattern matches every key. \
         Write the part of the key to match (`^` if you really mean the start of every key)"
    )]
    EmptyPattern {
        /// Position of the pattern in the list given.
        position: usize,
    },
    /// No pattern was given where at least one is needed.
    #[error("no key pattern given: {what} needs at least one pattern")]
    Empty {
        /// What needed the patterns (e.g. "the source patterns of a WeightRenaming").
        what: String,
    },
}

/// Anything that names one or more key patterns: `&str`, `String`, arrays, slices and vectors of
/// them. A single string is one pattern, as in transformers.
///
/// ```
/// use patcher_core::pattern::IntoPatterns;
/// assert_eq!("a".into_patterns(), vec!["a".to_string()]);
/// assert_eq!(["a", "b"].into_patterns().len(), 2);
/// assert_eq!(vec!["a".to_string()].into_patterns().len(), 1);
/// ```
pub trait IntoPatterns {
    /// The patterns, in order.
    fn into_patterns(self) -> Vec<String>;
}

impl IntoPatterns for &str {
    fn into_patterns(self) -> Vec<String> {
        vec![self.to_string()]
    }
}

impl IntoPatterns for String {
    fn into_patterns(self) -> Vec<String> {
        vec![self]
    }
}

impl IntoPatterns for &String {
    fn into_patterns(self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<const N: usize> IntoPatterns for [&str; N] {
    fn into_patterns(self) -> Vec<String> {
        self.iter().map(|s| s.to_string()).collect()
    }
}

impl<const N: usize> IntoPatterns for [String; N] {
    fn into_patterns(self) -> Vec<String> {
        self.into_iter().collect()
    }
}

impl IntoPatterns for &[&str] {
    fn into_patterns(self) -> Vec<String> {
        self.iter().map(|s| s.to_string()).collect()
    }
}

impl IntoPatterns for &[String] {
    fn into_patterns(self) -> Vec<String> {
        self.to_vec()
    }
}

impl IntoPatterns for Vec<&str> {
    fn into_patterns(self) -> Vec<String> {
        self.into_iter().map(str::to_string).collect()
    }
}

impl IntoPatterns for Vec<String> {
    fn into_patterns(self) -> Vec<String> {
        self
    }
}
