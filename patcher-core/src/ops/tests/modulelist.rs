//! MergeModulelist and SplitModulelist.

use super::*;
use crate::ops::{Concatenate, MergeModulelist, SplitModulelist};

fn experts() -> Vec<HostTensor<'static>> {
    vec![
        f32t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]),
        f32t(&[2, 2], &[5.0, 6.0, 7.0, 8.0]),
    ]
}

#[test]
fn merge_stacks_along_each_dim() {
    let p = Patterns::new(&["experts.*.w"], &["experts.w"]);
    let cases: [(usize, &[usize], [f32; 8]); 3] = [
        (0, &[2, 2, 2], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
        // out[i][e][j] = expert_e[i][j]
        (1, &[2, 2, 2], [1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]),
        // out[i][j][e] = expert_e[i][j]
        (2, &[2, 2, 2], [1.0, 5.0, 2.0, 6.0, 3.0, 7.0, 4.0, 8.0]),
    ];
    for (dim, shape, values) in cases {
        let inputs = Groups::new().with("experts.*.w", experts());
        let out = run(&MergeModulelist::new(dim), inputs, &p).unwrap();
        assert_eq!(
            flat(&out),
            vec![row("experts.w", shape, &values)],
            "dim {dim}"
        );
    }
}

#[test]
fn merge_then_concatenate_fuses_gate_and_up() {
    // transformers' Mixtral/Qwen2-MoE mapping: stack each list, keep source keys, concatenate.
    let p = Patterns::new(&["experts.*.w1", "experts.*.w3"], &["experts.gate_up"]);
    let inputs = Groups::new()
        .with(
            "experts.*.w1",
            vec![f32t(&[1, 2], &[1.0, 2.0]), f32t(&[1, 2], &[3.0, 4.0])],
        )
        .with(
            "experts.*.w3",
            vec![f32t(&[1, 2], &[5.0, 6.0]), f32t(&[1, 2], &[7.0, 8.0])],
        );
    let merged = run(&MergeModulelist::new(0), inputs, &p).unwrap();
    assert_eq!(
        flat(&merged),
        vec![
            row("experts.*.w1", &[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]),
            row("experts.*.w3", &[2, 1, 2], &[5.0, 6.0, 7.0, 8.0]),
        ]
    );
    let fused = run(&Concatenate::new(1), merged, &p).unwrap();
    assert_eq!(
        flat(&fused),
        vec![row(
            "experts.gate_up",
            &[2, 2, 2],
            &[1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]
        )]
    );
}

#[test]
fn merge_of_one_tensor_keeps_the_borrow() {
    let bytes = [0u8, 0, 0x80, 0x3f];
    let p = Patterns::new(&["e"], &["t"]);
    let inputs = Groups::new().with("e", vec![HostTensor::new(DType::F32, [1], &bytes[..])]);
    let out = run(&MergeModulelist::new(0), inputs, &p).unwrap();
    let t = &out.get("t").unwrap()[0];
    assert_eq!(t.shape, vec![1, 1]);
    assert!(t.is_borrowed());
}

#[test]
fn merge_errors() {
    let op = MergeModulelist::new(0);
    let msg = error(
        &op,
        Groups::new().with("e", experts()),
        &Patterns::new(&["e"], &["a", "b"]),
    );
    assert!(msg.contains("one input pattern (`e`) stacks into one tensor, but the converter has target patterns [`a`, `b`]"));
    let uneven = vec![f32t(&[2], &[1.0, 2.0]), f32t(&[1], &[3.0])];
    let msg = error(
        &op,
        Groups::new().with("e", uneven),
        &Patterns::new(&["e"], &["t"]),
    );
    assert_eq!(
        msg,
        "MergeModulelist(dim=0) on tensors for `model.target`: tensor 1 of `e` has shape [1] but \
         tensor 0 has [2]; every tensor of a stacked module list must have the same shape"
    );
    let msg = error(
        &op,
        Groups::new().with("e", vec![]),
        &Patterns::new(&["e"], &["t"]),
    );
    assert!(msg.contains("no tensors to stack for `e`"));
    let msg = error(
        &MergeModulelist::new(3),
        Groups::new().with("e", experts()),
        &Patterns::new(&["e"], &["t"]),
    );
    assert!(msg.contains(
        "dim 3 is out of range for the 2-d tensor of `e` with shape [2, 2]; use a dim below 3"
    ));
}

#[test]
fn split_unstacks_into_indexed_keys() {
    let p = Patterns::new(&["experts.w"], &["experts.*.w"]);
    let stacked = f32t(&[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let out = run(
        &SplitModulelist::new(0),
        Groups::new().with("experts.w", vec![stacked.clone()]),
        &p,
    );
    assert_eq!(
        flat(&out.unwrap()),
        vec![
            row("experts.0.w", &[2, 2], &[1.0, 2.0, 3.0, 4.0]),
            row("experts.1.w", &[2, 2], &[5.0, 6.0, 7.0, 8.0]),
        ]
    );
    let out = run(
        &SplitModulelist::new(1),
        Groups::new().with("experts.w", vec![stacked]),
        &p,
    );
    assert_eq!(
        flat(&out.unwrap()),
        vec![
            row("experts.0.w", &[2, 2], &[1.0, 2.0, 5.0, 6.0]),
            row("experts.1.w", &[2, 2], &[3.0, 4.0, 7.0, 8.0]),
        ]
    );
}

#[test]
fn split_in_a_chain_uses_the_source_keys() {
    let p = Patterns::new(&["gate_up"], &["e.*.w1", "e.*.w3"]);
    let inputs = Groups::new()
        .with("e.*.w1", vec![f32t(&[2, 1], &[1.0, 2.0])])
        .with("e.*.w3", vec![f32t(&[2, 1], &[3.0, 4.0])]);
    let out = run(&SplitModulelist::new(0), inputs, &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![
            row("e.0.w1", &[1], &[1.0]),
            row("e.1.w1", &[1], &[2.0]),
            row("e.0.w3", &[1], &[3.0]),
            row("e.1.w3", &[1], &[4.0]),
        ]
    );
}

#[test]
fn split_errors() {
    let stacked = || Groups::new().with("s", vec![f32t(&[2, 1], &[1.0, 2.0])]);
    let msg = error(
        &SplitModulelist::new(0),
        stacked(),
        &Patterns::new(&["s"], &["t"]),
    );
    assert!(msg.contains(
        "`t` has no `*` to receive the index of each of the 2 slices of `s` (shape [2, 1])"
    ));
    let msg = error(
        &SplitModulelist::new(0),
        stacked(),
        &Patterns::new(&["s"], &["a.*", "b.*"]),
    );
    assert!(msg.contains("but the converter has target patterns [`a.*`, `b.*`]"));
    let msg = error(
        &SplitModulelist::new(2),
        stacked(),
        &Patterns::new(&["s"], &["t.*"]),
    );
    assert!(msg.contains("dim 2 is out of range"));
    let two = Groups::new().with("s", vec![f32t(&[1], &[1.0]), f32t(&[1], &[2.0])]);
    let msg = error(
        &SplitModulelist::new(0),
        two,
        &Patterns::new(&["s"], &["t.*"]),
    );
    assert!(msg.contains("expects one stacked tensor for `s`, got 2"));
}
