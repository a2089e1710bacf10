//! Split, and Concatenate with recorded sizes (fused QKV under grouped-query attention).

use std::sync::Arc;

use super::*;
use crate::ops::{Concatenate, Split};

/// `first, first + 1, ...` as an F32 tensor: small integers, exact in every float dtype.
fn count(shape: &[usize], first: f32) -> HostTensor<'static> {
    let n: usize = shape.iter().product();
    f32t(shape, &(0..n).map(|v| first + v as f32).collect::<Vec<_>>())
}

#[test]
fn split_unequal_rows() {
    // [[1, 2], [3, 4], [5, 6], [7, 8]] -> 2 + 1 + 1 rows.
    let p = Patterns::new(&["qkv"], &["q", "k", "v"]);
    let data: Vec<u8> = (1..=8).flat_map(|v| (v as f32).to_le_bytes()).collect();
    let qkv = HostTensor::new(DType::F32, [4, 2], &data[..]);
    let op = Split::new(0, [2, 1, 1]);
    let out = run(&op, Groups::new().with("qkv", vec![qkv]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![
            row("q", &[2, 2], &[1.0, 2.0, 3.0, 4.0]),
            row("k", &[1, 2], &[5.0, 6.0]),
            row("v", &[1, 2], &[7.0, 8.0]),
        ]
    );
    // Rows of a borrowed tensor are contiguous: no copy.
    assert!(out.iter().all(|(_, t)| t[0].is_borrowed()));
    assert_eq!(op.name(), "Split(dim=0, sizes=[2, 1, 1])");
    assert_eq!(op.reverse().unwrap().name(), "Concatenate(dim=0)");
}

#[test]
fn split_unequal_columns() {
    // [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]] -> 3 + 2 columns.
    let p = Patterns::new(&["x"], &["a", "b"]);
    let x = || Groups::new().with("x", vec![count(&[2, 5], 1.0)]);
    let out = run(&Split::new(1, [3, 2]), x(), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![
            row("a", &[2, 3], &[1.0, 2.0, 3.0, 6.0, 7.0, 8.0]),
            row("b", &[2, 2], &[4.0, 5.0, 9.0, 10.0]),
        ]
    );
    // An empty piece in the middle.
    let p = Patterns::new(&["x"], &["a", "b", "c"]);
    let out = run(&Split::new(1, vec![1, 0, 4]), x(), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![
            row("a", &[2, 1], &[1.0, 6.0]),
            row("b", &[2, 0], &[]),
            row("c", &[2, 4], &[2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 9.0, 10.0]),
        ]
    );
}

#[test]
fn split_errors() {
    let x = || Groups::new().with("qkv", vec![count(&[6, 2], 0.0)]);
    let qkv = Patterns::new(&["qkv"], &["q", "k", "v"]);
    let msg = error(&Split::new(0, [4, 2]), x(), &qkv);
    assert_eq!(
        msg,
        "Split(dim=0, sizes=[4, 2]) on tensors for `model.target`: has 2 sizes [4, 2] for 3 \
         target patterns [`q`, `k`, `v`] (input `qkv` with shape [6, 2]); give one size per \
         target, in target order"
    );
    let msg = error(&Split::new(0, [4, 1, 2]), x(), &qkv);
    assert_eq!(
        msg,
        "Split(dim=0, sizes=[4, 1, 2]) on tensors for `model.target`: sizes [4, 1, 2] add up to \
         7, but `qkv` (shape [6, 2]) has size 6 along dim 0; the sizes of the targets [`q`, \
         `k`, `v`] must add up to it"
    );
    let msg = error(&Split::new(2, [2, 2, 2]), x(), &qkv);
    assert!(msg.contains("dim 2 is out of range for the 2-d tensor of `qkv` with shape [6, 2]"));
    let two = x().with("y", vec![f32t(&[1], &[1.0])]);
    let msg = error(
        &Split::new(0, [2, 2, 2]),
        two,
        &Patterns::new(&["qkv", "y"], &["q", "k", "v"]),
    );
    assert!(msg.contains("expects one tensor of one pattern, got `qkv`: [6, 2]; `y`: [1]"));
    let msg = error(
        &Split::new(0, Vec::new()),
        x(),
        &Patterns::new(&["qkv"], &[]),
    );
    assert!(msg.contains("has 0 sizes [] for 0 target patterns []"));
}

#[test]
fn concatenate_with_sizes_fuses_gqa_qkv() {
    // 2 query heads and 1 key/value head of head_dim 1, hidden size 2: 2 + 1 + 1 rows.
    let p = Patterns::new(&["q", "k", "v"], &["qkv"]);
    let inputs = Groups::new()
        .with("q", vec![f32t(&[2, 2], &[1.0, 2.0, 3.0, 4.0])])
        .with("k", vec![f32t(&[1, 2], &[5.0, 6.0])])
        .with("v", vec![f32t(&[1, 2], &[7.0, 8.0])]);
    let op = Concatenate::new(0).with_split_sizes([2, 1, 1]);
    assert_eq!(op.name(), "Concatenate(dim=0, sizes=[2, 1, 1])");
    assert_eq!(op.split_sizes(), Some(&[2, 1, 1][..]));
    let out = run(&op, inputs.clone(), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row(
            "qkv",
            &[4, 2],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        )]
    );
    let reverse = op.reverse().unwrap();
    assert_eq!(reverse.name(), "Split(dim=0, sizes=[2, 1, 1])");
    assert_eq!(run(reverse.as_ref(), out, &p.reversed()).unwrap(), inputs);
    // Plain Concatenate still reverses to Chunk.
    assert_eq!(Concatenate::new(0).name(), "Concatenate(dim=0)");
    assert_eq!(Concatenate::new(0).split_sizes(), None);
    assert_eq!(
        Concatenate::new(0).reverse().unwrap().name(),
        "Chunk(dim=0)"
    );
}

#[test]
fn concatenate_with_sizes_round_trips() {
    let p = Patterns::new(&["q", "k", "v"], &["qkv"]);
    // Rows: 4 + 2 + 2 (GQA, 2 query heads per key/value head).
    let rows = Groups::new()
        .with("q", vec![count(&[4, 3], 0.0)])
        .with("k", vec![count(&[2, 3], 12.0)])
        .with("v", vec![count(&[2, 3], 18.0)]);
    let op: Arc<dyn ConversionOp> = Arc::new(Concatenate::new(0).with_split_sizes([4, 2, 2]));
    assert_round_trip(&[op], rows, &p, None);
    // Columns: 3 + 1 + 2.
    let columns = Groups::new()
        .with("q", vec![count(&[2, 3], 0.0)])
        .with("k", vec![count(&[2, 1], 6.0)])
        .with("v", vec![count(&[2, 2], 8.0)]);
    let op: Arc<dyn ConversionOp> = Arc::new(Concatenate::new(1).with_split_sizes(vec![3, 1, 2]));
    assert_round_trip(&[op], columns, &p, None);
    // Split first, then its reverse.
    let p = Patterns::new(&["qkv"], &["q", "k", "v"]);
    for dim in [0, 1] {
        let inputs = Groups::new().with("qkv", vec![count(&[6, 6], 0.0)]);
        let op: Arc<dyn ConversionOp> = Arc::new(Split::new(dim, [3, 2, 1]));
        assert_round_trip(&[op], inputs, &p, None);
    }
}

#[test]
fn concatenate_with_sizes_checks_the_sizes() {
    let p = Patterns::new(&["q", "k", "v"], &["qkv"]);
    let inputs = || {
        Groups::new()
            .with("q", vec![count(&[4, 2], 0.0)])
            .with("k", vec![count(&[1, 2], 8.0)])
            .with("v", vec![count(&[2, 2], 10.0)])
    };
    let msg = error(
        &Concatenate::new(0).with_split_sizes([4, 2, 2]),
        inputs(),
        &p,
    );
    assert_eq!(
        msg,
        "Concatenate(dim=0, sizes=[4, 2, 2]) on tensors for `model.target`: `k` has size 1 \
         along dim 0 (shape [1, 2]), not the 2 recorded for it in sizes [4, 2, 2] (one per \
         source [`q`, `k`, `v`]); the sizes must match the checkpoint so that saving splits \
         the tensor back at the same places"
    );
    // A missing source has size 0.
    let no_v = Groups::new()
        .with("q", vec![count(&[4, 2], 0.0)])
        .with("k", vec![count(&[1, 2], 8.0)]);
    let msg = error(&Concatenate::new(0).with_split_sizes([4, 1, 2]), no_v, &p);
    assert!(msg.contains(
        "`v` has size 0 along dim 0 (no tensor), not the 2 recorded for it in sizes [4, 1, 2]"
    ));
    let msg = error(&Concatenate::new(0).with_split_sizes([4, 3]), inputs(), &p);
    assert!(msg.contains(
        "has 2 sizes [4, 3] for 3 source patterns [`q`, `k`, `v`]; record one size per \
         source, in declared order"
    ));
    // No tensors at all: the plain Concatenate message.
    let msg = error(
        &Concatenate::new(0).with_split_sizes([4, 2, 2]),
        Groups::new(),
        &p,
    );
    assert!(msg.contains("no tensors for any source pattern [`q`, `k`, `v`]"));
    // The tensors of one pattern count together.
    let p = Patterns::new(&["a", "b"], &["t"]);
    let lists = Groups::new()
        .with("a", vec![count(&[1], 0.0), count(&[2], 1.0)])
        .with("b", vec![count(&[1], 3.0)]);
    let out = run(
        &Concatenate::new(0).with_split_sizes([3, 1]),
        lists.clone(),
        &p,
    )
    .unwrap();
    assert_eq!(flat(&out), vec![row("t", &[4], &[0.0, 1.0, 2.0, 3.0])]);
    let msg = error(&Concatenate::new(0).with_split_sizes([2, 2]), lists, &p);
    assert!(msg.contains("`a` has size 3 along dim 0 (shapes [1], [2]), not the 2"));
}
