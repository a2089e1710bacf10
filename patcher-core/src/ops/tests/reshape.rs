//! Reshape.

use super::*;
use crate::ops::Reshape;

#[test]
fn reshape_infers_minus_one_and_keeps_the_borrow() {
    let p = Patterns::new(&["w"], &["t"]);
    let data: Vec<u8> = (1..=6).flat_map(|v| (v as f32).to_le_bytes()).collect();
    let w = || HostTensor::new(DType::F32, [2, 3], &data[..]);
    let out = run(
        &Reshape::new([3, -1]),
        Groups::new().with("w", vec![w()]),
        &p,
    )
    .unwrap();
    assert_eq!(
        flat(&out),
        vec![row("t", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]
    );
    assert!(out.get("t").unwrap()[0].is_borrowed());
    let out = run(&Reshape::new([6]), Groups::new().with("w", vec![w()]), &p).unwrap();
    assert_eq!(
        flat(&out),
        vec![row("t", &[6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]
    );
}

#[test]
fn reshape_between_checks_the_input_and_reverses() {
    let op = Reshape::between([2, -1, 1], [2, 3]);
    assert_eq!(op.name(), "Reshape([2, -1, 1] -> [2, 3])");
    let reverse = op.reverse().unwrap();
    assert_eq!(reverse.name(), "Reshape([2, 3] -> [2, -1, 1])");
    assert!(Reshape::new([-1]).reverse().is_none());
    let p = Patterns::new(&["w"], &["t"]);
    let w = Groups::new().with("w", vec![f32t(&[2, 3], &[0.0; 6])]);
    assert_eq!(
        error(&op, w, &p),
        "Reshape([2, -1, 1] -> [2, 3]) on tensors for `model.target`: `w` has shape [2, 3], not \
         the [2, -1, 1] this reshape starts from"
    );
}

#[test]
fn reshape_errors() {
    let p = Patterns::new(&["w"], &["t"]);
    let w = || Groups::new().with("w", vec![f32t(&[2, 3], &[0.0; 6])]);
    assert_eq!(
        error(&Reshape::new([4, -1]), w(), &p),
        "Reshape([4, -1]) on tensors for `model.target`: cannot view `w` with shape [2, 3] as \
         [4, -1]: 6 elements do not divide into the known dimensions"
    );
    assert!(error(&Reshape::new([-1, -1]), w(), &p).contains("at most one dimension may be -1"));
    assert!(error(&Reshape::new([-2, 3]), w(), &p).contains("dimensions must be sizes or -1"));
    assert!(error(&Reshape::new([5]), w(), &p).contains("it has 6 elements, the new shape 5"));
}
