//! Collapsing numbered keys for the report: `layers.{0..23}.mlp.experts.gate_up_proj`.
//!
//! Keys that differ in one numeric part only (and carry the same value, e.g. the same shapes) are
//! merged, one part at a time, so the result is always an exact product: a merged line never
//! stands for a key that is not in the input.
//!
//! The cost is bounded whatever the keys: a key longer than [`MAX_KEY_BYTES`] or with more than
//! [`MAX_PARTS`] dot-separated parts is kept as it is (never merged), only positions holding a
//! number are tried, and at most [`MAX_PASSES`] passes are made. So collapsing is linear in the
//! total length of the keys (a 200 KB key costs one scan).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// Keys longer than this are not merged (their parts are not even split).
pub(crate) const MAX_KEY_BYTES: usize = 512;
/// Keys with more dot-separated parts than this are not merged.
pub(crate) const MAX_PARTS: usize = 64;
/// Passes over the positions; real keys need two or three (experts, then layers).
const MAX_PASSES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Numbers(BTreeSet<u64>),
}

/// One line being built: its parts, its value, and the index of the first input key it stands
/// for (a key that exists, for "did you mean").
type Entry<V> = (Vec<Part>, V, usize);

/// Merges keys that differ in numeric parts only and carry equal values; keeps the order of
/// first appearance. A merged line is an exact product (it never stands for a key that is not
/// in `items`), runs of three or more numbers become ranges, and the cost is linear in the total
/// length of the keys (a key over 512 bytes or with more than 64 dot-separated parts is kept as
/// it is).
///
/// ```
/// use patcher_core::plan::collapse_keys;
///
/// let items: Vec<(String, [usize; 2])> = (0..4)
///     .flat_map(|l| {
///         [
///             (format!("layers.{l}.attn.weight"), [8, 8]),
///             (format!("layers.{l}.mlp.weight"), [16, 8]),
///         ]
///     })
///     .collect();
/// assert_eq!(
///     collapse_keys(&items),
///     [
///         ("layers.{0..3}.attn.weight".to_string(), [8, 8]),
///         ("layers.{0..3}.mlp.weight".to_string(), [16, 8]),
///     ]
/// );
/// ```
pub fn collapse_keys<V: Clone + Eq + Hash>(items: &[(String, V)]) -> Vec<(String, V)> {
    collapse(items)
        .into_iter()
        .map(|(key, value, _)| (key, value))
        .collect()
}

/// Collapses plain keys (for report sections that need no suggestion).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn collapse_names(keys: &[String]) -> Vec<String> {
    collapse_names_with_first(keys)
        .into_iter()
        .map(|(line, _)| line)
        .collect()
}

/// Collapses plain keys; each line comes with the first input key it stands for.
pub(crate) fn collapse_names_with_first(keys: &[String]) -> Vec<(String, &str)> {
    let items: Vec<(String, ())> = keys.iter().map(|k| (k.clone(), ())).collect();
    collapse(&items)
        .into_iter()
        .map(|(line, (), first)| (line, keys[first].as_str()))
        .collect()
}

fn collapse<V: Clone + Eq + Hash>(items: &[(String, V)]) -> Vec<(String, V, usize)> {
    let mut entries: Vec<Entry<V>> = items
        .iter()
        .enumerate()
        .map(|(i, (key, value))| (parse(key), value.clone(), i))
        .collect();
    let max_len = entries
        .iter()
        .map(|(parts, _, _)| parts.len())
        .max()
        .unwrap_or(0);
    // Right to left, so experts merge within a layer before layers merge; repeat until stable.
    for _ in 0..MAX_PASSES {
        let before = entries.len();
        for position in (0..max_len).rev() {
            let numeric = entries
                .iter()
                .any(|(parts, _, _)| matches!(parts.get(position), Some(Part::Numbers(_))));
            if numeric {
                entries = merge_at(entries, position);
            }
        }
        if entries.len() == before {
            break;
        }
    }
    entries
        .into_iter()
        .map(|(parts, value, first)| (render(&parts), value, first))
        .collect()
}

fn parse(key: &str) -> Vec<Part> {
    if key.len() > MAX_KEY_BYTES || key.bytes().filter(|&b| b == b'.').count() >= MAX_PARTS {
        return vec![Part::Text(key.to_string())];
    }
    key.split('.')
        .map(|part| {
            let numeric = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            // "007" stays text: rendering it back as 7 would change the key.
            match part.parse::<u64>() {
                Ok(n) if numeric && n.to_string() == part => Part::Numbers(BTreeSet::from([n])),
                _ => Part::Text(part.to_string()),
            }
        })
        .collect()
}

fn merge_at<V: Clone + Eq + Hash>(entries: Vec<Entry<V>>, position: usize) -> Vec<Entry<V>> {
    let mut out: Vec<Entry<V>> = Vec::with_capacity(entries.len());
    let mut index: HashMap<(String, V), usize> = HashMap::new();
    for (parts, value, first) in entries {
        let Some(Part::Numbers(numbers)) = parts.get(position) else {
            out.push((parts, value, first));
            continue;
        };
        let signature = (signature(&parts, position), value.clone());
        match index.get(&signature) {
            Some(&i) => {
                if let Part::Numbers(existing) = &mut out[i].0[position] {
                    existing.extend(numbers.iter().copied());
                }
            }
            None => {
                index.insert(signature, out.len());
                out.push((parts, value, first));
            }
        }
    }
    out
}

/// The key with `position` blanked out: entries with the same signature differ only there.
fn signature(parts: &[Part], position: usize) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if i == position {
            out.push('\u{0}');
        } else {
            out.push_str(&render_part(part));
        }
    }
    out
}

fn render(parts: &[Part]) -> String {
    parts.iter().map(render_part).collect::<Vec<_>>().join(".")
}

fn render_part(part: &Part) -> String {
    match part {
        Part::Text(text) => text.clone(),
        Part::Numbers(numbers) if numbers.len() == 1 => {
            numbers.first().map(u64::to_string).unwrap_or_default()
        }
        Part::Numbers(numbers) => format!("{{{}}}", render_numbers(numbers)),
    }
}

/// `0,1,2,3,7` -> `0..3,7`: runs of three or more become ranges.
fn render_numbers(numbers: &BTreeSet<u64>) -> String {
    let mut pieces = Vec::new();
    let mut iter = numbers.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while let Some(next) = iter.next_if(|&n| Some(n) == end.checked_add(1)) {
            end = next;
        }
        match end - start {
            0 => pieces.push(start.to_string()),
            1 => pieces.extend([start.to_string(), end.to_string()]),
            _ => pieces.push(format!("{start}..{end}")),
        }
    }
    pieces.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(keys: &[&str]) -> Vec<String> {
        collapse_names(&keys.iter().map(|k| k.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn contiguous_layers_become_a_range() {
        let keys: Vec<String> = (0..24)
            .map(|l| format!("model.layers.{l}.mlp.experts.gate_up_proj"))
            .collect();
        assert_eq!(
            collapse_names(&keys),
            ["model.layers.{0..23}.mlp.experts.gate_up_proj"]
        );
    }

    #[test]
    fn non_contiguous_sets_are_listed() {
        assert_eq!(names(&["a.0.w", "a.2.w", "a.5.w"]), ["a.{0,2,5}.w"]);
        assert_eq!(
            names(&["a.0.w", "a.1.w", "a.2.w", "a.7.w"]),
            ["a.{0..2,7}.w"]
        );
        let (a, b) = (format!("a.{}.w", u64::MAX - 1), format!("a.{}.w", u64::MAX));
        assert_eq!(
            names(&[&a, &b]),
            [format!("a.{{{},{}}}.w", u64::MAX - 1, u64::MAX)]
        );
    }

    #[test]
    fn merges_only_exact_products() {
        // Layer 0 has experts 0 and 1, layer 1 only expert 2: no product, no false line.
        let out = names(&["l.0.e.0.w", "l.0.e.1.w", "l.1.e.2.w"]);
        assert_eq!(out, ["l.0.e.{0,1}.w", "l.1.e.2.w"]);
        let out = names(&["l.0.e.0.w", "l.0.e.1.w", "l.1.e.0.w", "l.1.e.1.w"]);
        assert_eq!(out, ["l.{0,1}.e.{0,1}.w"]);
    }

    #[test]
    fn long_keys_are_kept_and_cost_one_scan() {
        let long = format!("a.{}.w", "x.1.".repeat(100_000));
        let keys = vec![long.clone(), "l.0.w".into(), "l.1.w".into()];
        assert_eq!(collapse_names(&keys), [long, "l.{0,1}.w".to_string()]);
        let keys = ["l.3.w".to_string(), "l.1.w".to_string()];
        let with_first = collapse_names_with_first(&keys);
        assert_eq!(with_first, [("l.{1,3}.w".to_string(), "l.3.w")]);
    }

    #[test]
    fn values_must_agree() {
        let items = vec![
            ("l.0.w".to_string(), 1),
            ("l.1.w".to_string(), 1),
            ("l.2.w".to_string(), 2),
        ];
        assert_eq!(
            collapse_keys(&items),
            [("l.{0,1}.w".to_string(), 1), ("l.2.w".to_string(), 2)]
        );
    }
}
