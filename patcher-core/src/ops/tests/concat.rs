//! Concatenate and Chunk.

use super::*;
use crate::ops::{Chunk, Concatenate};

#[test]
fn concatenate_follows_declared_source_order() {
    let p = Patterns::new(&["w1", "w3"], &["gate_up"]);
    // Collected w3 first: the declared order (w1, w3) still wins.
    let inputs = Groups::new()
        .with("w3", vec![f32t(&[1, 2], &[3.0, 4.0])])
        .with("w1", vec![f32t(&[1, 2], &[1.0, 2.0])]);
    let out = run(&Concatenate::new(0), inputs, &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row("gate_up", &[2, 2], &[1.0, 2.0, 3.0, 4.0])]
    );
}

#[test]
fn concatenate_flattens_lists_along_dim_1() {
    // w1: [[1], [2]]; w3: [[3], [4]] then [[5, 6], [7, 8]] -> [[1, 3, 5, 6], [2, 4, 7, 8]].
    let p = Patterns::new(&["w1", "w3"], &["fused"]);
    let inputs = Groups::new()
        .with("w1", vec![f32t(&[2, 1], &[1.0, 2.0])])
        .with(
            "w3",
            vec![
                f32t(&[2, 1], &[3.0, 4.0]),
                f32t(&[2, 2], &[5.0, 6.0, 7.0, 8.0]),
            ],
        );
    let out = run(&Concatenate::new(1), inputs, &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row(
            "fused",
            &[2, 4],
            &[1.0, 3.0, 5.0, 6.0, 2.0, 4.0, 7.0, 8.0]
        )]
    );
}

#[test]
fn concatenate_skips_missing_sources_and_reads_unaligned_borrows() {
    // Borrowed f32 data at an odd offset, as a view into a larger buffer may be.
    let mut buffer = vec![0u8];
    for v in [1.0f32, 2.0, 3.0] {
        buffer.extend_from_slice(&v.to_le_bytes());
    }
    let a = HostTensor::new(DType::F32, [1], &buffer[1..5]);
    let c = HostTensor::new(DType::F32, [2], &buffer[5..13]);
    let p = Patterns::new(&["a", "b", "c"], &["t"]);
    let out = run(
        &Concatenate::new(0),
        Groups::new().with("c", vec![c]).with("a", vec![a]),
        &p,
    );
    assert_eq!(flat(&out.unwrap()), vec![row("t", &[3], &[1.0, 2.0, 3.0])]);
}

#[test]
fn concatenate_of_one_tensor_keeps_the_borrow() {
    let bytes = 7.0f32.to_le_bytes();
    let p = Patterns::new(&["a"], &["t"]);
    let inputs = Groups::new().with("a", vec![HostTensor::new(DType::F32, [1], &bytes[..])]);
    let out = run(&Concatenate::new(0), inputs, &p).unwrap();
    assert!(out.get("t").unwrap()[0].is_borrowed());
}

#[test]
fn concatenate_errors() {
    let op = Concatenate::new(1);
    let two = || {
        Groups::new()
            .with("w1", vec![f32t(&[2, 1], &[1.0, 2.0])])
            .with("w3", vec![f32t(&[3, 1], &[3.0, 4.0, 5.0])])
    };
    let msg = error(&op, two(), &Patterns::new(&["w1", "w3"], &["t"]));
    assert_eq!(
        msg,
        "Concatenate(dim=1) on tensors for `model.target`: shapes [2, 1] (`w1`) and [3, 1] \
         (`w3`) differ outside dim 1; every input must have the same shape except along the \
         concatenation dim"
    );
    let msg = error(&op, two(), &Patterns::new(&["w1", "w3"], &["a", "b"]));
    assert!(msg.contains("needs exactly one target pattern, the converter has [`a`, `b`]"));
    let msg = error(&op, two(), &Patterns::new(&["w1"], &["t"]));
    assert!(msg.contains("got tensors for `w3`, which is not one of the source patterns [`w1`]"));
    let msg = error(
        &Concatenate::new(2),
        two(),
        &Patterns::new(&["w1", "w3"], &["t"]),
    );
    assert!(msg.contains("dim 2 is out of range for the 2-d tensor of `w1` with shape [2, 1]"));
    let mixed = Groups::new()
        .with("w1", vec![f32t(&[1], &[1.0])])
        .with("w3", vec![f32t(&[1], &[1.0]).cast(DType::BF16).unwrap()]);
    let msg = error(
        &Concatenate::new(0),
        mixed,
        &Patterns::new(&["w1", "w3"], &["t"]),
    );
    assert!(msg.contains("mixed dtypes (F32 for `w1`, BF16 for `w3`)"));
    let msg = error(&op, Groups::new(), &Patterns::new(&["w1"], &["t"]));
    assert!(msg.contains("no tensors for any source pattern [`w1`]"));
}

#[test]
fn chunk_splits_into_the_targets() {
    let p = Patterns::new(&["qkv"], &["q", "k", "v"]);
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let qkv = HostTensor::new(DType::F32, [3, 2], &data[..]);
    let out = run(&Chunk::new(0), Groups::new().with("qkv", vec![qkv]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![
            row("q", &[1, 2], &[1.0, 2.0]),
            row("k", &[1, 2], &[3.0, 4.0]),
            row("v", &[1, 2], &[5.0, 6.0]),
        ]
    );
    // Rows of a borrowed tensor are contiguous: no copy.
    assert!(out.iter().all(|(_, t)| t[0].is_borrowed()));
}

#[test]
fn chunk_has_torch_chunk_semantics() {
    // 5 into 2: pieces of ceil(5/2) = 3, then 2.
    let p = Patterns::new(&["x"], &["a", "b"]);
    let x = f32t(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    let out = run(&Chunk::new(0), Groups::new().with("x", vec![x]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![
            row("a", &[3], &[1.0, 2.0, 3.0]),
            row("b", &[2], &[4.0, 5.0])
        ]
    );
    // Along dim 1: [[1, 2, 3, 4], [5, 6, 7, 8]] -> [[1, 2], [5, 6]] and [[3, 4], [7, 8]].
    let x = f32t(&[2, 4], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let out = run(&Chunk::new(1), Groups::new().with("x", vec![x]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![
            row("a", &[2, 2], &[1.0, 2.0, 5.0, 6.0]),
            row("b", &[2, 2], &[3.0, 4.0, 7.0, 8.0]),
        ]
    );
}

#[test]
fn chunk_errors() {
    let x = || Groups::new().with("x", vec![f32t(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0])]);
    let msg = error(
        &Chunk::new(0),
        x(),
        &Patterns::new(&["x"], &["a", "b", "c", "d"]),
    );
    assert_eq!(
        msg,
        "Chunk(dim=0) on tensors for `model.target`: size 5 along dim 0 of `x` (shape [5]) cuts \
         into 3 pieces of at most 2, not 4 (one per target [`a`, `b`, `c`, `d`]); torch.chunk \
         needs a size that gives exactly one piece per target"
    );
    let msg = error(&Chunk::new(0), x(), &Patterns::new(&["x"], &["a"]));
    assert!(
        msg.contains("needs at least two target patterns to chunk into, the converter has [`a`]")
    );
    let two = x().with("y", vec![f32t(&[1], &[1.0])]);
    let msg = error(
        &Chunk::new(0),
        two,
        &Patterns::new(&["x", "y"], &["a", "b"]),
    );
    assert!(msg.contains("expects one tensor of one pattern, got `x`: [5]; `y`: [1]"));
    let msg = error(&Chunk::new(1), x(), &Patterns::new(&["x"], &["a", "b"]));
    assert!(msg.contains("dim 1 is out of range for the 1-d tensor of `x`"));
}
