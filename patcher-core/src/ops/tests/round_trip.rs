//! Every op followed by its reverse gives back the input, in F32, F16 and BF16.

use std::sync::Arc;

use super::*;
use crate::ops::{
    Chunk, Concatenate, Interleave, MergeModulelist, PermuteForRope, Reshape, SplitModulelist,
    Transpose,
};

/// 0, 1, 2, ...: small integers, exact in every float dtype.
fn iota(shape: &[usize]) -> HostTensor<'static> {
    let n: usize = shape.iter().product();
    f32t(shape, &(0..n).map(|v| v as f32).collect::<Vec<_>>())
}

fn ops(list: Vec<Arc<dyn ConversionOp>>) -> Vec<Arc<dyn ConversionOp>> {
    list
}

#[test]
fn chunk_and_concatenate() {
    for dim in [0, 1] {
        let p = Patterns::new(&["qkv"], &["q", "k", "v"]);
        let inputs = Groups::new().with("qkv", vec![iota(&[6, 6])]);
        assert_round_trip(&ops(vec![Arc::new(Chunk::new(dim))]), inputs, &p, None);
        let p = Patterns::new(&["q", "k", "v"], &["qkv"]);
        let inputs = Groups::new()
            .with("q", vec![iota(&[2, 4])])
            .with("k", vec![iota(&[2, 4])])
            .with("v", vec![iota(&[2, 4])]);
        assert_round_trip(
            &ops(vec![Arc::new(Concatenate::new(dim))]),
            inputs,
            &p,
            None,
        );
    }
}

#[test]
fn merge_and_split() {
    for dim in [0, 1, 2] {
        let p = Patterns::new(&["e.*.w"], &["e.w"]);
        let experts = vec![iota(&[2, 3]), iota(&[2, 3]).cast(DType::F32).unwrap()];
        let inputs = Groups::new().with("e.*.w", experts.clone());
        let back = Groups::new()
            .with("e.0.w", vec![experts[0].clone()])
            .with("e.1.w", vec![experts[1].clone()]);
        assert_round_trip(
            &ops(vec![Arc::new(MergeModulelist::new(dim))]),
            inputs,
            &p,
            Some(back),
        );
    }
    // Split first: on the way back the loader collects the per-expert keys under the source
    // pattern again, which is done by hand here.
    let p = Patterns::new(&["e.w"], &["e.*.w"]);
    let op = SplitModulelist::new(1);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let stacked = iota(&[3, 2, 2]).cast(dtype).unwrap();
        let inputs = Groups::new().with("e.w", vec![stacked.clone()]);
        let split = run(&op, inputs, &p).unwrap();
        let regrouped =
            Groups::new().with("e.*.w", split.into_iter().flat_map(|(_, t)| t).collect());
        let back = run(op.reverse().unwrap().as_ref(), regrouped, &p.reversed()).unwrap();
        assert_eq!(back, Groups::new().with("e.w", vec![stacked]), "{dtype}");
    }
}

#[test]
fn merge_concatenate_chain() {
    // experts.*.w1 / w3 -> gate_up, and back to one key per expert.
    let p = Patterns::new(&["e.*.w1", "e.*.w3"], &["gate_up"]);
    let w1 = [
        iota(&[2, 3]),
        f32t(&[2, 3], &[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]),
    ];
    let w3 = [
        f32t(&[2, 3], &[20.0, 21.0, 22.0, 23.0, 24.0, 25.0]),
        iota(&[2, 3]),
    ];
    let inputs = Groups::new()
        .with("e.*.w1", w1.to_vec())
        .with("e.*.w3", w3.to_vec());
    let back = Groups::new()
        .with("e.0.w1", vec![w1[0].clone()])
        .with("e.1.w1", vec![w1[1].clone()])
        .with("e.0.w3", vec![w3[0].clone()])
        .with("e.1.w3", vec![w3[1].clone()]);
    let chain = ops(vec![
        Arc::new(MergeModulelist::new(0)),
        Arc::new(Concatenate::new(1)),
    ]);
    assert_round_trip(&chain, inputs, &p, Some(back));
}

#[test]
fn single_tensor_ops() {
    let p = Patterns::new(&["w"], &["t"]);
    let w = || Groups::new().with("w", vec![iota(&[4, 6, 2])]);
    for op in ops(vec![
        Arc::new(Transpose::new(0, 1)),
        Arc::new(Transpose::new(2, 0)),
        Arc::new(Interleave::new(0)),
        Arc::new(Interleave::new(1).with_inverse(true)),
        Arc::new(Reshape::between([4, -1, 2], [-1, 2])),
        Arc::new(PermuteForRope::new().default_heads(2)),
    ]) {
        if op.name().starts_with("PermuteForRope") {
            let rope = Groups::new().with("w", vec![iota(&[12, 2])]);
            assert_round_trip(std::slice::from_ref(&op), rope, &p, None);
            let bias = Groups::new().with("w", vec![iota(&[12])]);
            assert_round_trip(&[op], bias, &p, None);
        } else {
            assert_round_trip(&[op], w(), &p, None);
        }
    }
}

#[test]
fn chunk_then_rope_with_grouped_query_attention() {
    // A fused qkv of 4 + 4 + 4 rows: q with 2 heads of 2, k with 1 head of 4, v untouched.
    let p = Patterns::new(&["qkv"], &["q_proj", "k_proj", "v_proj"]);
    let rope = PermuteForRope::new().heads("q_proj", 2).heads("k_proj", 1);
    let chain = ops(vec![Arc::new(Chunk::new(0)), Arc::new(rope)]);
    let inputs = Groups::new().with("qkv", vec![iota(&[12, 3])]);
    assert_round_trip(&chain, inputs, &p, None);
}
