//! Transpose, Interleave and PermuteForRope.

use super::*;
use crate::ops::{Interleave, PermuteForRope, Transpose};

#[test]
fn transpose_swaps_dims() {
    let p = Patterns::new(&["w"], &["t"]);
    // [[1, 2, 3], [4, 5, 6]] -> [[1, 4], [2, 5], [3, 6]]
    let w = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let out = run(&Transpose::new(0, 1), Groups::new().with("w", vec![w]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row("t", &[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0])]
    );
    // 3-d, dims 0 and 2 of [2, 1, 3]: out[k][0][i] = in[i][0][k].
    let w = f32t(&[2, 1, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let out = run(&Transpose::new(2, 0), Groups::new().with("w", vec![w]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row("t", &[3, 1, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0])]
    );
}

#[test]
fn transpose_keys_and_errors() {
    // First op of a one-to-many chain: the output keeps the source pattern.
    let p = Patterns::new(&["qkv"], &["q", "k"]);
    let w = f32t(&[1, 2], &[1.0, 2.0]);
    let out = run(
        &Transpose::new(0, 1),
        Groups::new().with("qkv", vec![w]),
        &p,
    )
    .unwrap();
    assert_eq!(flat(&out), vec![row("qkv", &[2, 1], &[1.0, 2.0])]);
    // A size-1 swap does not move data: a borrowed input stays borrowed.
    let bytes = [0u8; 8];
    let w = HostTensor::new(DType::F32, [1, 2], &bytes[..]);
    let out = run(
        &Transpose::new(0, 1),
        Groups::new().with("qkv", vec![w]),
        &p,
    )
    .unwrap();
    assert!(out.get("qkv").unwrap()[0].is_borrowed());

    let op = Transpose::new(0, 2);
    let one = || Groups::new().with("w", vec![f32t(&[1, 2], &[1.0, 2.0])]);
    let msg = error(&op, one(), &Patterns::new(&["w"], &["t"]));
    assert_eq!(
        msg,
        "Transpose(dim0=0, dim1=2) on tensors for `model.target`: dim 2 is out of range for the \
         2-d tensor of `w` with shape [1, 2]; use a dim below 2"
    );
    let two = one().with("v", vec![f32t(&[1], &[1.0])]);
    let msg = error(
        &Transpose::new(0, 1),
        two,
        &Patterns::new(&["w", "v"], &["t"]),
    );
    assert!(msg.contains("expects the tensor of exactly one pattern, got [`w`, `v`]"));
    let msg = error(
        &Transpose::new(0, 1),
        one(),
        &Patterns::new(&["w", "v"], &["a", "b"]),
    );
    assert!(msg.contains(
        "cannot name its output with source patterns [`w`, `v`] and target patterns [`a`, `b`]"
    ));
    let list = Groups::new().with("w", vec![f32t(&[1], &[1.0]), f32t(&[1], &[2.0])]);
    let msg = error(&Transpose::new(0, 0), list, &Patterns::new(&["w"], &["t"]));
    assert!(
        msg.contains("expects one tensor for `w`, got 2; stack them first with MergeModulelist")
    );
}

#[test]
fn interleave_separates_pairs() {
    let p = Patterns::new(&["gate_up"], &["t"]);
    // [g0, u0, g1, u1] -> [g0, g1, u0, u1]
    let x = f32t(&[4], &[1.0, 10.0, 2.0, 20.0]);
    let out = run(
        &Interleave::new(0),
        Groups::new().with("gate_up", vec![x]),
        &p,
    )
    .unwrap();
    assert_eq!(flat(&out), vec![row("t", &[4], &[1.0, 2.0, 10.0, 20.0])]);
    // Three pairs (a size where both directions differ): [g0, u0, g1, u1, g2, u2] ->
    // [g0, g1, g2, u0, u1, u2], and the inverse undoes it.
    let x = f32t(&[6], &[1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
    let out = run(
        &Interleave::new(0),
        Groups::new().with("gate_up", vec![x]),
        &p,
    )
    .unwrap();
    assert_eq!(
        flat(&out),
        vec![row("t", &[6], &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0])]
    );
    let x = f32t(&[6], &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]);
    let op = Interleave::new(0).with_inverse(true);
    let out = run(&op, Groups::new().with("gate_up", vec![x]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row("t", &[6], &[1.0, 10.0, 2.0, 20.0, 3.0, 30.0])]
    );
    // Rows move as units along dim 0 of [4, 2]: r0 r1 r2 r3 -> r0 r2 r1 r3.
    let x = f32t(&[4, 2], &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]);
    let out = run(
        &Interleave::new(0),
        Groups::new().with("gate_up", vec![x]),
        &p,
    )
    .unwrap();
    assert_eq!(
        flat(&out),
        vec![row("t", &[4, 2], &[0.0, 0.5, 2.0, 2.5, 1.0, 1.5, 3.0, 3.5])]
    );
    // Along dim 1 of [2, 4].
    let x = f32t(&[2, 4], &[1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0]);
    let out = run(
        &Interleave::new(1),
        Groups::new().with("gate_up", vec![x]),
        &p,
    )
    .unwrap();
    assert_eq!(
        flat(&out),
        vec![row(
            "t",
            &[2, 4],
            &[1.0, 2.0, 10.0, 20.0, 3.0, 4.0, 30.0, 40.0]
        )]
    );
}

#[test]
fn interleave_errors() {
    let x = Groups::new().with("x", vec![f32t(&[3], &[1.0, 2.0, 3.0])]);
    let msg = error(&Interleave::new(0), x, &Patterns::new(&["x"], &["t"]));
    assert_eq!(
        msg,
        "Interleave(dim=0, inverse=false) on tensors for `model.target`: dim 0 of `x` (shape \
         [3]) has odd size 3; interleaved pairs need an even size"
    );
}

#[test]
fn rope_permutes_each_head() {
    // Two heads of dimension 4, one input column: per head a0 b0 a1 b1 -> a0 a1 b0 b1.
    let p = Patterns::new(&["q_proj"], &["q_proj"]);
    let op = PermuteForRope::new().heads("q_proj", 2);
    let q = f32t(&[8, 1], &[0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]);
    let out = run(&op, Groups::new().with("q_proj", vec![q]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row(
            "q_proj",
            &[8, 1],
            &[0.0, 2.0, 1.0, 3.0, 10.0, 12.0, 11.0, 13.0]
        )]
    );
    // Rows of two columns move as units; one head of dimension 4.
    let op = PermuteForRope::new().heads("q_proj", 1);
    let q = f32t(&[4, 2], &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]);
    let out = run(&op, Groups::new().with("q_proj", vec![q]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row(
            "q_proj",
            &[4, 2],
            &[0.0, 0.5, 2.0, 2.5, 1.0, 1.5, 3.0, 3.5]
        )]
    );
    // A 1-d bias with one head of dimension 6 (both directions differ at this size):
    // a0 b0 a1 b1 a2 b2 -> a0 a1 a2 b0 b1 b2, and the inverse a0 a1 a2 b0 b1 b2 -> a0 b0 ...
    let b = || f32t(&[6], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let out = run(&op, Groups::new().with("q_proj", vec![b()]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row("q_proj", &[6], &[0.0, 2.0, 4.0, 1.0, 3.0, 5.0])]
    );
    let op = op.with_inverse(true);
    let out = run(&op, Groups::new().with("q_proj", vec![b()]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row("q_proj", &[6], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0])]
    );
}

#[test]
fn rope_uses_the_head_count_of_each_pattern() {
    // Grouped-query attention after a Chunk: q has 2 heads, k one head, v is not permuted.
    let p = Patterns::new(&["qkv"], &["q_proj", "k_proj", "v_proj"]);
    let op = PermuteForRope::new().heads("q_proj", 2).heads("k_proj", 1);
    let v_bytes: Vec<u8> = [5.0f32, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let inputs = Groups::new()
        .with(
            "q_proj",
            vec![f32t(&[8], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])],
        )
        .with("k_proj", vec![f32t(&[4], &[0.0, 1.0, 2.0, 3.0])])
        .with(
            "v_proj",
            vec![HostTensor::new(DType::F32, [2], &v_bytes[..])],
        );
    let out = run(&op, inputs, &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![
            row("q_proj", &[8], &[0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]),
            // With q's 2 heads (transformers' choice) k would stay [0, 1, 2, 3].
            row("k_proj", &[4], &[0.0, 2.0, 1.0, 3.0]),
            row("v_proj", &[2], &[5.0, 6.0]),
        ]
    );
    assert!(out.get("v_proj").unwrap()[0].is_borrowed());
    assert_eq!(
        op.name(),
        "PermuteForRope(q_proj=2, k_proj=1, inverse=false)"
    );
    assert_eq!(
        PermuteForRope::new().default_heads(4).heads_for("o_proj"),
        Some(4)
    );
}

#[test]
fn rope_renames_in_a_one_to_one_converter() {
    // The head count is found through the target name when the source is named differently.
    let p = Patterns::new(&["wk"], &["k_proj"]);
    let op = PermuteForRope::new().heads("k_proj", 1);
    let k = f32t(&[4], &[0.0, 1.0, 2.0, 3.0]);
    let out = run(&op, Groups::new().with("wk", vec![k]), &p).unwrap();
    assert_eq!(flat(&out), vec![row("k_proj", &[4], &[0.0, 2.0, 1.0, 3.0])]);
}

#[test]
fn rope_errors() {
    let p = Patterns::new(&["q_proj"], &["q_proj"]);
    let op = PermuteForRope::new().heads("q_proj", 2);
    let q = Groups::new().with("q_proj", vec![f32t(&[6], &[0.0; 6])]);
    let msg = error(&op, q, &p);
    assert_eq!(
        msg,
        "PermuteForRope(q_proj=2, inverse=false) on tensors for `model.target`: 6 rows of \
         `q_proj` (shape [6]) do not split into 2 heads of an even size; check the head count \
         given for this pattern"
    );
    let q = Groups::new().with("q_proj", vec![f32t(&[4, 1, 1], &[0.0; 4])]);
    assert!(error(&op, q, &p).contains("only 2-d weights and 1-d biases are permuted"));
    let q = Groups::new().with("q_proj", vec![f32t(&[4], &[0.0; 4]), f32t(&[4], &[0.0; 4])]);
    assert!(error(&op, q, &p).contains("expects one tensor for `q_proj`, got 2"));
}
