//! Natural order of dotted keys: numeric parts compare as numbers, so expert 10 comes after 2.
//!
//! This is transformers' `dot_natural_key`: split on `.`, whole-digit parts are numbers. Python
//! cannot compare a number with a string (it raises); here a number sorts before a name, which
//! makes the order total.

use std::cmp::Ordering;

/// A key wrapped so that it sorts in natural order (`sort_by_key`, `BTreeMap` keys).
///
/// ```
/// use patcher_core::pattern::NaturalKey;
/// let mut keys = vec!["experts.10.w", "experts.2.w"];
/// keys.sort_by_key(|k| NaturalKey(*k));
/// assert_eq!(keys, ["experts.2.w", "experts.10.w"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaturalKey<'a>(pub &'a str);

impl Ord for NaturalKey<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        natural_key_cmp(self.0, other.0)
    }
}

impl PartialOrd for NaturalKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two dotted keys in natural order.
///
/// ```
/// use std::cmp::Ordering;
/// use patcher_core::pattern::natural_key_cmp;
/// assert_eq!(natural_key_cmp("layers.2.w", "layers.10.w"), Ordering::Less);
/// assert_eq!(natural_key_cmp("shard_2", "shard_11"), Ordering::Greater); // not a whole number
/// ```
pub fn natural_key_cmp(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return a.cmp(b), // equal part by part ("01" vs "1"): stay total
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match part_cmp(x, y) {
                Ordering::Equal => continue,
                other => return other,
            },
        }
    }
}

/// Sorts `keys` in natural order, in place.
///
/// ```
/// use patcher_core::pattern::natural_key_order;
/// let mut keys: Vec<String> = (0..12).rev().map(|e| format!("experts.{e}.w1")).collect();
/// natural_key_order(&mut keys);
/// assert_eq!(keys[2], "experts.2.w1");
/// assert_eq!(keys[10], "experts.10.w1");
/// ```
pub fn natural_key_order<S: AsRef<str>>(keys: &mut [S]) {
    keys.sort_by(|a, b| natural_key_cmp(a.as_ref(), b.as_ref()));
}

fn is_number(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())
}

/// The value of a whole-digit part (`"7"`, `"007"`), saturating at `u64::MAX` for a number of
/// any length (a hostile key's `99999999999999999999999` is larger than any index, never
/// "not a number"); `None` if `part` is not all digits.
pub(crate) fn saturating_number(part: &str) -> Option<u64> {
    is_number(part).then(|| {
        part.bytes().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
    })
}

fn part_cmp(x: &str, y: &str) -> Ordering {
    match (is_number(x), is_number(y)) {
        (true, true) => {
            // Compare as numbers of any size: fewer significant digits is smaller.
            let x = x.trim_start_matches('0');
            let y = y.trim_start_matches('0');
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.cmp(y),
    }
}
