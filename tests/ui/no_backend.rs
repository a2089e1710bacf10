use burn_patcher::Patchable;

#[derive(Patchable)]
struct Scale {
    factor: f32,
}

fn main() {}
