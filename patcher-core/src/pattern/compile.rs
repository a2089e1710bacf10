//! Compiling key patterns into one alternation and searching keys with it.

use regex::Regex;

use super::{IntoPatterns, PatternError};

/// Capture-group names reserved for the engine; user patterns must not use them.
const BRANCH_GROUP: &str = "__kp_branch";
const TAIL_GROUP: &str = "__kp_tail";

/// Several key patterns compiled into one regex alternation, searched anywhere in a key.
///
/// The first alternative (in the set's order) that matches at the leftmost position wins, as with
/// Python's `re.search` over `"(?P<g0>...)|(?P<g1>...)"`. [`PatternSet::new`] keeps the given
/// order (transformers' `build_glob_alternation`); [`PatternSet::longest_first`] tries longer
/// patterns first (what a transform does with its source patterns, so `weight.absmax` beats
/// `weight`). Either way, [`PatternMatch::index`] is the pattern's position as given.
#[derive(Debug, Clone)]
pub struct PatternSet {
    patterns: Vec<String>,
    regex: Regex,
    /// In alternation order.
    branches: Vec<Branch>,
    /// Number of `(...)` groups of each pattern, by declared index.
    capture_counts: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Branch {
    /// Declared index of the pattern.
    index: usize,
    /// Capture index of the group around the whole branch.
    group: usize,
    /// Capture index of the pattern's own first group, if it has one.
    first_capture: Option<usize>,
    /// Capture index of the name-boundary group, if the pattern got one.
    tail: Option<usize>,
}

/// Where a pattern matched in a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternMatch<'k> {
    /// Declared index of the pattern that matched.
    pub index: usize,
    /// Byte offset of the matched part in the key.
    pub start: usize,
    /// Byte offset just past the matched part (the name-boundary check is not part of it).
    pub end: usize,
    /// What the pattern's first `(...)` group matched, if it has one and it took part.
    pub first_group: Option<&'k str>,
    key: &'k str,
}

impl<'k> PatternMatch<'k> {
    /// The matched part of the key.
    pub fn as_str(&self) -> &'k str {
        &self.key[self.start..self.end]
    }

    /// The key with the matched part replaced by `replacement` (taken literally).
    pub fn replace(&self, replacement: &str) -> String {
        let mut out = String::with_capacity(self.key.len() + replacement.len());
        out.push_str(&self.key[..self.start]);
        out.push_str(replacement);
        out.push_str(&self.key[self.end..]);
        out
    }
}

/// How a pattern's match must end (transformers' `(?!\w)` after a trailing `[A-Za-z0-9]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// No boundary: the pattern does not end in a letter or digit.
    None,
    /// `\b`: the last atom always matches a word character, so "not followed by a word
    /// character" is exactly a word boundary. Cheap for the regex engines.
    WordBoundary,
    /// `(\W|$)` in a group of its own, for the rare last atom that may match a non-word character
    /// (e.g. `\x2e`): exact, but large under Unicode, so only used when needed.
    Group,
}

/// The regex body of one key pattern (`*.` becomes `.*\.`) and the boundary it needs.
fn regex_body(pattern: &str) -> (String, Tail) {
    let body = pattern.replace("*.", r".*\.");
    if !body
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return (body, Tail::None);
    }
    let tail = match regex_syntax::ast::parse::Parser::new().parse(&body) {
        Ok(ast) if last_atom_is_word(&ast) => Tail::WordBoundary,
        _ => Tail::Group,
    };
    (body, tail)
}

/// Whether the last atom of the (last alternative of the) pattern always matches a word char.
fn last_atom_is_word(ast: &regex_syntax::ast::Ast) -> bool {
    use regex_syntax::ast::{Ast, ClassPerlKind};
    match ast {
        Ast::Alternation(a) => a.asts.last().is_some_and(last_atom_is_word),
        Ast::Concat(c) => c.asts.last().is_some_and(last_atom_is_word),
        Ast::Literal(l) => l.c.is_alphanumeric() || l.c == '_',
        Ast::ClassPerl(p) => {
            !p.negated && matches!(p.kind, ClassPerlKind::Digit | ClassPerlKind::Word)
        }
        _ => false,
    }
}

impl PatternSet {
    /// Compiles `patterns`, tried in the given order.
    pub fn new(patterns: impl IntoPatterns) -> Result<Self, PatternError> {
        let patterns = patterns.into_patterns();
        let order = (0..patterns.len()).collect();
        Self::build(patterns, order)
    }

    /// Compiles `patterns`, trying longer ones first (ties keep the given order).
    pub fn longest_first(patterns: impl IntoPatterns) -> Result<Self, PatternError> {
        let patterns = patterns.into_patterns();
        let mut order: Vec<usize> = (0..patterns.len()).collect();
        // Stable sort, like Python's `sorted(key=len, reverse=True)` keeps ties in order.
        order.sort_by_key(|&i| std::cmp::Reverse(patterns[i].len()));
        Self::build(patterns, order)
    }

    fn build(patterns: Vec<String>, order: Vec<usize>) -> Result<Self, PatternError> {
        if patterns.is_empty() {
            return Err(PatternError::Empty { what: "a pattern set".into() });
        }
        if let Some(position) = patterns.iter().position(String::is_empty) {
            return Err(PatternError::EmptyPattern { position });
        }
        // Compile each pattern alone first, so an error names the pattern at fault.
        let mut bodies = Vec::with_capacity(patterns.len());
        let mut capture_counts = Vec::with_capacity(patterns.len());
        for pattern in &patterns {
            let (body, tail) = regex_body(pattern);
            let alone = Regex::new(&body).map_err(|e| invalid(pattern, &e))?;
            if alone
                .capture_names()
                .flatten()
                .any(|n| n.starts_with("__kp_"))
            {
                return Err(PatternError::InvalidRegex {
                    pattern: pattern.clone(),
                    message: "group names starting with `__kp_` are reserved".into(),
                });
            }
            capture_counts.push(alone.captures_len() - 1);
            bodies.push((body, tail));
        }

        // The tail sits inside the branch group so it binds like `(?!\w)` would: to the last
        // alternative of a pattern with a top-level `|`. A group tail consumes one character
        // (Rust's regex has no lookahead), so the matched part ends where that group starts.
        let alternation = order
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let (body, tail) = &bodies[i];
                let tail = match tail {
                    Tail::None => String::new(),
                    Tail::WordBoundary => r"\b".to_string(),
                    Tail::Group => format!(r"(?P<{TAIL_GROUP}{k}>\W|$)"),
                };
                format!("(?P<{BRANCH_GROUP}{k}>{body}{tail})")
            })
            .collect::<Vec<_>>()
            .join("|");
        let regex = Regex::new(&alternation).map_err(|e| PatternError::InvalidRegex {
            pattern: patterns.join(" | "),
            message: e.to_string(),
        })?;

        let index_of = |name: &str| regex.capture_names().position(|n| n == Some(name));
        let mut branches = Vec::with_capacity(order.len());
        for (k, &i) in order.iter().enumerate() {
            let group =
                index_of(&format!("{BRANCH_GROUP}{k}")).ok_or_else(|| internal(&patterns[i]))?;
            branches.push(Branch {
                index: i,
                group,
                // Groups are numbered by opening parenthesis: the pattern's own first group
                // comes right after the branch group.
                first_capture: (capture_counts[i] > 0).then_some(group + 1),
                tail: index_of(&format!("{TAIL_GROUP}{k}")),
            });
        }
        Ok(Self { patterns, regex, branches, capture_counts })
    }

    /// A set that matches no key (stands in for the patterns of a transform that did not
    /// compile; that transform reports its error when validated).
    pub(crate) fn empty() -> Self {
        Self {
            patterns: Vec::new(),
            // `[^\s\S]` matches no character, so nothing.
            regex: Regex::new(r"[^\s\S]").expect("a constant, valid regex"),
            branches: Vec::new(),
            capture_counts: Vec::new(),
        }
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Number of patterns (zero only for the set of a transform that did not compile).
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether the set has no pattern (only that of a transform that did not compile).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Number of `(...)` groups in the pattern at `index` (0 if out of range).
    pub fn capture_count(&self, index: usize) -> usize {
        self.capture_counts.get(index).copied().unwrap_or(0)
    }

    /// Whether any pattern matches somewhere in `key`.
    pub fn is_match(&self, key: &str) -> bool {
        self.regex.is_match(key)
    }

    /// The winning match in `key`: leftmost position, then first pattern in the set's order.
    pub fn find<'k>(&self, key: &'k str) -> Option<PatternMatch<'k>> {
        // The DFA check is much cheaper than captures, and most keys match no pattern.
        if !self.regex.is_match(key) {
            return None;
        }
        let caps = self.regex.captures(key)?;
        self.branches.iter().find_map(|b| {
            let whole = caps.get(b.group)?;
            let end = b
                .tail
                .and_then(|t| caps.get(t))
                .map_or(whole.end(), |t| t.start());
            Some(PatternMatch {
                index: b.index,
                start: whole.start(),
                end,
                first_group: b
                    .first_capture
                    .and_then(|c| caps.get(c))
                    .map(|m| m.as_str()),
                key,
            })
        })
    }
}

fn invalid(pattern: &str, error: &regex::Error) -> PatternError {
    PatternError::InvalidRegex { pattern: pattern.to_string(), message: error.to_string() }
}

fn internal(pattern: &str) -> PatternError {
    PatternError::InvalidRegex {
        pattern: pattern.to_string(),
        message: "internal error: branch group not found in the compiled alternation".into(),
    }
}
