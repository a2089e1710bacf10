//! Seeded mutations through `from_pretrained` (issue 12): of the qwen2_moe fixture's weights
//! (header and body) and of its `config.json`, with the unpatched model and the seed's patcher.
//! Never a panic, never more than a bounded allocation. A few seconds in CI; a longer run with
//! `PATCHER_MUTATION_ITERS=20000 cargo test -p patcher-models --test mutation`
//! (`PATCHER_MUTATION_SEED` picks another seed).

#[path = "../../patcher-core/tests/common/mutate.rs"]
mod mutate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use mutate::{mutate_json, mutate_safetensors, settings, CountingAlloc, Rng};
use patcher_burn::LoadOptions;
use patcher_burn::Patcher;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLM};
use patcher_models::replacements::qwen2_moe_patcher;
use patcher_models::PretrainedError;

type B = NdArray<f32>;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// Live bytes a load may add: the fixture's model is 0.5 MB, and a config may describe at most
/// twice the checkpoint's elements (plus 1M parameters), so 256 MiB is far above any honest
/// load and far below what an unchecked config asks for.
const BOUND: usize = 256 << 20;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "patcher-models-mutation-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `from_pretrained` on `dir`; the outcome's name.
fn load(dir: &Path, patcher: &Patcher<B>) -> String {
    let result = Qwen2MoeForCausalLM::<B>::from_pretrained(
        dir,
        patcher,
        &Default::default(),
        &LoadOptions::default().check_finite(),
    );
    match result {
        Ok(loaded) if loaded.non_finite.is_empty() => "loaded".into(),
        Ok(_) => "loaded with NaN/Inf".into(),
        Err(error) => {
            let _ = error.to_string();
            let debug = format!("{error:?}");
            let inner = match &error {
                PretrainedError::Config(_) => "Config",
                PretrainedError::Load(_) => "Load",
            };
            let variant: String = debug
                .split_once('(')
                .map(|(_, rest)| rest)
                .unwrap_or(&debug)
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("")
                .to_string();
            format!("{inner}::{variant}")
        }
    }
}

fn run(
    label: &str,
    iters: usize,
    seed: u64,
    dir: &Path,
    target: &str,
    mutate: impl Fn(&mut Rng) -> (Vec<u8>, String),
) -> BTreeMap<String, usize> {
    let config = Qwen2MoeConfig::from_file(fixture("qwen2_moe/config.json")).unwrap();
    let patchers = [
        Patcher::<B>::new(),
        qwen2_moe_patcher::<B>(&config, true, true),
    ];
    let mut rng = Rng::new(seed);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..iters {
        let (bytes, what) = mutate(&mut rng);
        std::fs::write(dir.join(target), &bytes).unwrap();
        let patcher = &patchers[i % 2];
        let context = || format!("{label} #{i} (seed {seed:#x}): {what}");
        let outcome = ALLOC.checked(BOUND, context, || load(dir, patcher));
        *outcomes.entry(outcome).or_default() += 1;
    }
    outcomes
}

#[test]
fn mutated_weights_and_configs_never_panic_and_allocate_boundedly() {
    let (iters, seed) = settings(400);
    let dir = scratch("qwen2_moe");
    for name in ["model.safetensors", "config.json"] {
        std::fs::copy(fixture("qwen2_moe").join(name), dir.join(name)).unwrap();
    }

    let weights = std::fs::read(fixture("qwen2_moe/model.safetensors")).unwrap();
    let outcomes = run("weights", iters, seed, &dir, "model.safetensors", |rng| {
        mutate_safetensors(&weights, rng)
    });
    eprintln!("weight mutations: {outcomes:?}");
    std::fs::write(dir.join("model.safetensors"), &weights).unwrap();

    let config = std::fs::read_to_string(fixture("qwen2_moe/config.json")).unwrap();
    let outcomes = run("config", iters, seed ^ 2, &dir, "config.json", |rng| {
        let (json, what) = mutate_json(&config, rng);
        (json.into_bytes(), what)
    });
    eprintln!("config mutations: {outcomes:?}");
    assert!(outcomes.keys().any(|k| k.starts_with("Config::")));
    let _ = std::fs::remove_dir_all(&dir);
}
