//! Duplicate keys in a JSON object: safetensors' parser and serde's maps keep the last value of a
//! key given twice, silently. A header (or an index's `weight_map`) that names a tensor twice is
//! corrupt or hand-edited, and which copy wins is arbitrary, so the reader rejects it.
//!
//! The scan walks the top-level object's keys only and skips the values without building them
//! (`IgnoredAny`), so it costs one pass over the text and memory for the keys.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// The first key the top-level JSON object of `json` names twice, if any. `None` too when `json`
/// is not an object or not valid JSON: the caller's parser reports that.
pub(crate) fn first_duplicate_key(json: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_map(DuplicateFinder).ok().flatten()
}

/// The first key the `weight_map` object inside an index's JSON names twice, if any.
pub(crate) fn first_duplicate_in_weight_map(json: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_map(WeightMapFinder).ok().flatten()
}

struct DuplicateFinder;

impl<'de> Visitor<'de> for DuplicateFinder {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut duplicate = None;
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            if duplicate.is_none() && !seen.insert(key.clone()) {
                duplicate = Some(key);
            }
        }
        Ok(duplicate)
    }
}

struct WeightMapFinder;

impl<'de> Visitor<'de> for WeightMapFinder {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut duplicate = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "weight_map" {
                let found = map.next_value_seed(Seed)?;
                duplicate = duplicate.or(found);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(duplicate)
    }
}

/// Runs [`DuplicateFinder`] on one value of a map.
struct Seed;

impl<'de> serde::de::DeserializeSeed<'de> for Seed {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(DuplicateFinder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_duplicate() {
        assert_eq!(first_duplicate_key(br#"{"a": 1, "b": {"a": 2}}"#), None);
        assert_eq!(
            first_duplicate_key(br#"{"a": 1, "b": 2, "a": [3], "b": 4}"#).as_deref(),
            Some("a")
        );
        assert_eq!(first_duplicate_key(b"[1]"), None);
        assert_eq!(first_duplicate_key(b"{"), None);
        let index = br#"{"metadata": {}, "weight_map": {"x": "a", "y": "b", "x": "c"}}"#;
        assert_eq!(first_duplicate_in_weight_map(index).as_deref(), Some("x"));
        assert_eq!(
            first_duplicate_in_weight_map(br#"{"weight_map": {"x": "a"}}"#),
            None
        );
    }
}
