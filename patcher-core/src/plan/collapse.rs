//! Collapsing numbered keys for the report: `layers.{0..23}.mlp.experts.gate_up_proj`.
//!
//! Keys that differ in one numeric part only (and carry the same value, e.g. the same shapes) are
//! merged, one part at a time, so the result is always an exact product: a merged line never
//! stands for a key that is not in the input.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Numbers(BTreeSet<u64>),
}

/// Merges keys that differ in numeric parts only; keeps the order of first appearance.
pub(crate) fn collapse_keys<V: Clone + Eq + Hash>(items: &[(String, V)]) -> Vec<(String, V)> {
    let mut entries: Vec<(Vec<Part>, V)> = items
        .iter()
        .map(|(key, value)| (parse(key), value.clone()))
        .collect();
    let max_len = entries
        .iter()
        .map(|(parts, _)| parts.len())
        .max()
        .unwrap_or(0);
    // Right to left, so experts merge within a layer before layers merge; repeat until stable.
    loop {
        let before = entries.len();
        for position in (0..max_len).rev() {
            entries = merge_at(entries, position);
        }
        if entries.len() == before {
            break;
        }
    }
    entries
        .into_iter()
        .map(|(parts, value)| (render(&parts), value))
        .collect()
}

/// Collapses plain keys.
pub(crate) fn collapse_names(keys: &[String]) -> Vec<String> {
    let items: Vec<(String, ())> = keys.iter().map(|k| (k.clone(), ())).collect();
    collapse_keys(&items).into_iter().map(|(k, ())| k).collect()
}

fn parse(key: &str) -> Vec<Part> {
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

fn merge_at<V: Clone + Eq + Hash>(
    entries: Vec<(Vec<Part>, V)>,
    position: usize,
) -> Vec<(Vec<Part>, V)> {
    let mut out: Vec<(Vec<Part>, V)> = Vec::with_capacity(entries.len());
    let mut index: HashMap<(String, V), usize> = HashMap::new();
    for (parts, value) in entries {
        let Some(Part::Numbers(numbers)) = parts.get(position) else {
            out.push((parts, value));
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
                out.push((parts, value));
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
