//! Seeded mutations of a committed checkpoint's header and body, and of a sharded index,
//! through `Checkpoint::open`, reading every tensor and planning a load: never a panic, and
//! never more than a bounded allocation. A few seconds in CI; a longer run with
//! `PATCHER_MUTATION_ITERS=200000 cargo test -p patcher-core --test mutation`
//! (`PATCHER_MUTATION_SEED` picks another seed).

#[path = "common/mutate.rs"]
mod mutate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mutate::{mutate_json, mutate_safetensors, settings, CountingAlloc, Rng};
use patcher_core::ops::MergeModulelist;
use patcher_core::plan::{ConversionPlan, PlanOptions};
use patcher_core::{Checkpoint, DType, TensorMeta, WeightConverter, WeightTransform};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("patcher-mutation-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the plan is given: the fixture's own keys, with the experts' `down_proj` merged.
struct Model {
    transforms: Vec<WeightTransform>,
    expected: Vec<(String, Vec<usize>)>,
}

impl Model {
    fn of(checkpoint: &Checkpoint) -> Self {
        let merge = WeightConverter::try_new(
            "mlp.experts.*.down_proj.weight",
            "mlp.experts.down_proj",
            vec![Arc::new(MergeModulelist::new(0))],
        )
        .unwrap();
        let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
        let mut merged: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
        for (key, meta) in checkpoint.metas() {
            match key.split_once(".mlp.experts.") {
                Some((layer, rest)) if rest.ends_with(".down_proj.weight") => {
                    let entry = merged
                        .entry(format!("{layer}.mlp.experts.down_proj"))
                        .or_insert((0, meta.shape.clone()));
                    entry.0 += 1;
                }
                _ => expected.push((key, meta.shape)),
            }
        }
        for (key, (count, mut shape)) in merged {
            shape.insert(0, count);
            expected.push((key, shape));
        }
        Self { transforms: vec![merge.into()], expected }
    }
}

/// Opens, reads every tensor, plans; returns the outcome's name.
fn exercise(path: &Path, model: &Model) -> String {
    let checkpoint = match Checkpoint::open(path) {
        Ok(checkpoint) => checkpoint,
        Err(error) => {
            let _ = error.to_string();
            let debug = format!("{error:?}");
            return debug
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("")
                .to_string();
        }
    };
    for tensor in checkpoint.iter() {
        let host = tensor
            .read()
            .expect("a tensor of an opened checkpoint reads");
        if host.dtype.is_float() {
            let cast = host.cast(DType::F32).expect("a float tensor casts");
            assert_eq!(cast.bytes.len(), tensor.meta().num_elements() * 4);
        }
    }
    let metas: Vec<(String, TensorMeta)> = checkpoint.metas();
    let plan = ConversionPlan::new(
        &model.transforms,
        &metas,
        &model.expected,
        &PlanOptions::default(),
    );
    let _ = plan.report().to_string();
    if plan.is_clean() {
        "clean".into()
    } else {
        "report".into()
    }
}

/// Runs `iters` mutations of `original` written to `target`, checking each.
fn run(
    label: &str,
    iters: usize,
    seed: u64,
    target: &Path,
    open: &Path,
    model: &Model,
    mutate: impl Fn(&mut Rng) -> (Vec<u8>, String),
) -> BTreeMap<String, usize> {
    let mut rng = Rng::new(seed);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..iters {
        let (bytes, what) = mutate(&mut rng);
        std::fs::write(target, &bytes).unwrap();
        // Tensors are read one at a time (each at most the file's size, then cast to f32): 64 MiB
        // plus a few times the file's size is plenty.
        let bound = (64 << 20) + 4 * bytes.len();
        let context = || format!("{label} #{i} (seed {seed:#x}): {what}");
        let outcome = ALLOC.checked(bound, context, || exercise(open, model));
        *outcomes.entry(outcome).or_default() += 1;
    }
    outcomes
}

#[test]
fn mutated_checkpoints_and_indexes_never_panic_and_allocate_boundedly() {
    let (iters, seed) = settings(3000);
    let original = std::fs::read(fixture("qwen2_moe/model.safetensors")).unwrap();
    let model = Model::of(&Checkpoint::open(fixture("qwen2_moe")).unwrap());

    let dir = scratch("single");
    let file = dir.join("model.safetensors");
    let outcomes = run("checkpoint", iters, seed, &file, &file, &model, |rng| {
        mutate_safetensors(&original, rng)
    });
    eprintln!("checkpoint mutations: {outcomes:?}");
    assert!(
        outcomes.len() >= 3,
        "the mutations reach several outcomes: {outcomes:?}"
    );

    // The sharded fixture with a mutated index.
    let dir = scratch("sharded");
    let sharded = fixture("qwen2_moe_sharded");
    for entry in std::fs::read_dir(&sharded).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let outcomes = run(
        "index",
        iters / 4,
        seed ^ 1,
        &index,
        &index,
        &model,
        |rng| {
            let (json, what) = mutate_json(&text, rng);
            (json.into_bytes(), what)
        },
    );
    eprintln!("index mutations: {outcomes:?}");
    let _ = std::fs::remove_dir_all(scratch("single"));
    let _ = std::fs::remove_dir_all(&dir);
}
