use burn_patcher::Patchable;

#[derive(Patchable)]
union Weights {
    a: u32,
    b: f32,
}

fn main() {}
