//! Module-list indices the model does not have (`experts.7` when the model has 4 experts).
//!
//! `MergeModulelist` stacks the tensors it is given in key order; it does not look at their
//! indices. A checkpoint with experts `0, 1, 2, 7` would stack into 4 experts with expert 7 in
//! slot 3, and `0..=4` into a wrong shape. The plan knows the count the model expects (the
//! stacked dimension of the merged parameter's shape), so a key whose index is outside
//! `0..count` is reported as unexpected instead of joining the stack.

use crate::ops::{Concatenate, MergeModulelist};
use crate::pattern::saturating_number;
use crate::transform::WeightTransform;

/// Whether `key_in`, claimed by `transform` for the model parameter `target` (of shape
/// `target_shape`, `None` if the model has no such parameter), names a
/// module-list index at or past the count the model has. Only for converters that start with
/// [`MergeModulelist`] followed by [`Concatenate`]s along other dimensions (the stacked
/// dimension then survives into the parameter's shape); `false` whenever that cannot be told.
pub(crate) fn index_out_of_range(
    transform: &WeightTransform,
    target: &str,
    key_in: &str,
    target_shape: Option<&[usize]>,
) -> bool {
    let Some(converter) = transform.as_converter() else {
        return false;
    };
    let ops = converter.ops();
    let Some(merge) = ops
        .first()
        .and_then(|op| op.as_any())
        .and_then(|any| any.downcast_ref::<MergeModulelist>())
    else {
        return false;
    };
    let concat_elsewhere = ops[1..].iter().all(|op| {
        op.as_any()
            .and_then(|any| any.downcast_ref::<Concatenate>())
            .is_some_and(|c| c.dim() != merge.dim())
    });
    let count = target_shape.and_then(|shape| shape.get(merge.dim()));
    match (concat_elsewhere, count, list_index(key_in, target)) {
        (true, Some(&count), Some(index)) => index >= count as u64,
        _ => false,
    }
}

/// The module-list index in `key_in`: its numeric parts, less those of `target` matched in
/// order, must leave exactly one (`layers.0.experts.7.w` for `layers.0.experts.w`: 7).
fn list_index(key_in: &str, target: &str) -> Option<u64> {
    // Saturating: an index too long for u64 is past every count, never skipped (skipped, it
    // would join the stack and cost the other experts their parameter).
    let numbers =
        |key: &str| -> Vec<u64> { key.split('.').filter_map(saturating_number).collect() };
    let target = numbers(target);
    let mut expected = target.iter().peekable();
    let mut left = Vec::new();
    for n in numbers(key_in) {
        if expected.peek() == Some(&&n) {
            expected.next();
        } else {
            left.push(n);
        }
    }
    match (expected.next(), left.as_slice()) {
        (None, [index]) => Some(*index),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_list_index() {
        let target = "model.layers.0.mlp.experts.gate_up_proj";
        assert_eq!(
            list_index("model.layers.0.mlp.experts.7.gate_proj.weight", target),
            Some(7)
        );
        assert_eq!(
            list_index("model.layers.0.mlp.experts.0.gate_proj.weight", target),
            Some(0)
        );
        assert_eq!(list_index("model.layers.0.mlp.experts.w", target), None);
        assert_eq!(list_index("a.1.b.2.c", "a.b"), None);
        // Longer than u64: past any count, not "no index".
        assert_eq!(
            list_index(
                "model.layers.0.mlp.experts.99999999999999999999999.gate_proj.weight",
                target
            ),
            Some(u64::MAX)
        );
    }
}
