//! Compile-fail tests of `#[derive(Patchable)]` and `#[slot_interface]`: each misuse is an error
//! on the offending tokens (snapshots in `tests/ui/*.stderr`).

#[test]
fn derive_misuse_is_a_spanned_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
