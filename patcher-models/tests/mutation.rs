//! Seeded mutations through `from_pretrained` (issue 12): of the weights (header and body) and
//! the `config.json` of the qwen2_moe, qwen2_moe_dense and mixtral fixtures, with the unpatched
//! model and the fused-QKV, sequential-experts patcher.
//! Never a panic, never more than a bounded allocation. A few seconds in CI; a longer run with
//! `PATCHER_MUTATION_ITERS=20000 cargo test -p patcher-models --test mutation`
//! (`PATCHER_MUTATION_SEED` picks another seed).

#[path = "../../patcher-core/tests/common/mutate.rs"]
mod mutate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use mutate::{mutate_json, mutate_safetensors, settings, CountingAlloc, Rng};
use patcher_burn::{LoadError, LoadOptions, Loaded, Patcher};
use patcher_models::mixtral::{MixtralConfig, MixtralForCausalLm};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;

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

/// A family's `from_pretrained` on a folder, with patcher `i % 2` (unpatched, or fused QKV and
/// sequential experts): whether every weight is finite, or the error.
type Load = Box<dyn Fn(&Path, usize) -> Result<bool, LoadError>>;

/// A [`Load`] through `from_pretrained` with the two `patchers`, counting non-finite weights.
fn load_with<M: 'static>(
    patchers: [Patcher<B>; 2],
    from_pretrained: impl Fn(&Path, &Patcher<B>, &LoadOptions) -> Result<Loaded<M>, LoadError> + 'static,
) -> Load {
    Box::new(move |dir, i| {
        let options = LoadOptions::default().check_finite();
        let loaded = from_pretrained(dir, &patchers[i % 2], &options)?;
        Ok(loaded.non_finite.is_empty())
    })
}

fn qwen2_moe(name: &str) -> Load {
    let config = Qwen2MoeConfig::from_file(fixture(name).join("config.json")).unwrap();
    let patched = Patch::seed().patcher::<B, _>(&config).unwrap();
    load_with([Patcher::new(), patched], |dir, patcher, options| {
        Pretrained::<B>::from_path(dir)
            .patcher(patcher)
            .options(options.clone())
            .load::<Qwen2MoeForCausalLm<B>>(&Default::default())
    })
}

fn mixtral() -> Load {
    let config = MixtralConfig::from_file(fixture("mixtral").join("config.json")).unwrap();
    let patched = Patch::seed().patcher::<B, _>(&config).unwrap();
    load_with([Patcher::new(), patched], |dir, patcher, options| {
        Pretrained::<B>::from_path(dir)
            .patcher(patcher)
            .options(options.clone())
            .load::<MixtralForCausalLm<B>>(&Default::default())
    })
}

/// A load's outcome, named.
fn outcome(result: Result<bool, LoadError>) -> String {
    match result {
        Ok(true) => "loaded".into(),
        Ok(false) => "loaded with NaN/Inf".into(),
        Err(error) => {
            let _ = error.to_string();
            let debug = format!("{error:?}");
            // `Config(Field { .. })` -> `Config::Field`: the load error's variant and the one
            // it wraps (a field name for a struct variant).
            let mut names = debug
                .split(|c: char| !c.is_alphanumeric())
                .filter(|name| !name.is_empty());
            let outer = names.next().unwrap_or_default();
            let inner = names.next().unwrap_or_default();
            format!("{outer}::{inner}")
        }
    }
}

fn run(
    label: &str,
    iters: usize,
    seed: u64,
    (dir, target): (&Path, &str),
    load: &Load,
    mutate: impl Fn(&mut Rng) -> (Vec<u8>, String),
) -> BTreeMap<String, usize> {
    let mut rng = Rng::new(seed);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..iters {
        let (bytes, what) = mutate(&mut rng);
        std::fs::write(dir.join(target), &bytes).unwrap();
        let context = || format!("{label} #{i} (seed {seed:#x}): {what}");
        let outcome = ALLOC.checked(BOUND, context, || outcome(load(dir, i)));
        *outcomes.entry(outcome).or_default() += 1;
    }
    outcomes
}

/// Mutates fixture `name`'s weights, then its config, loading each mutant with `load`.
fn mutate_fixture(name: &str, load: Load, iters: usize, seed: u64) {
    let dir = scratch(name);
    for file in ["model.safetensors", "config.json"] {
        std::fs::copy(fixture(name).join(file), dir.join(file)).unwrap();
    }
    assert_eq!(outcome(load(&dir, 1)), "loaded", "{name} as committed");

    let weights = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
    let target = (dir.as_path(), "model.safetensors");
    let outcomes = run(
        &format!("{name} weights"),
        iters,
        seed,
        target,
        &load,
        |rng| mutate_safetensors(&weights, rng),
    );
    eprintln!("{name} weight mutations: {outcomes:?}");
    std::fs::write(dir.join("model.safetensors"), &weights).unwrap();

    let config = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
    let target = (dir.as_path(), "config.json");
    let outcomes = run(
        &format!("{name} config"),
        iters,
        seed ^ 2,
        target,
        &load,
        |rng| {
            let (json, what) = mutate_json(&config, rng);
            (json.into_bytes(), what)
        },
    );
    eprintln!("{name} config mutations: {outcomes:?}");
    assert!(outcomes.keys().any(|k| k.starts_with("Config::")));
    let _ = std::fs::remove_dir_all(&dir);
}

// One test: the counting allocator must see one load at a time.
#[test]
fn mutated_weights_and_configs_never_panic_and_allocate_boundedly() {
    let (iters, seed) = settings(400);
    mutate_fixture("qwen2_moe", qwen2_moe("qwen2_moe"), iters, seed);
    // Dense layers among sparse ones; Mixtral's hub keys, renamed and merged on the way in.
    mutate_fixture(
        "qwen2_moe_dense",
        qwen2_moe("qwen2_moe_dense"),
        iters / 2,
        seed ^ 3,
    );
    mutate_fixture("mixtral", mixtral(), iters / 2, seed ^ 5);
}
