use burn_patcher::Patchable;

#[derive(Patchable)]
struct Identity;

fn main() {}
