//! Speed of a prefill forward after a load (issue 11): ours on the CPU backends, in each Linear
//! layout and with the seed's patches, beside transformers' eager forward.
//!
//! ```text
//! cargo run --release --example forward_benchmark --features flex -- [--dir DIR] [--size-mb N]
//!     [--rounds N] [--shapes 1x128,4x512] [--backends ndarray,flex] [--threads N]
//!     [--no-transformers] [--no-layouts] [--breakdown] [--models native,unpatched,views,fused,seed]
//! ```
//!
//! One run does everything, in one process per side (ours, then transformers), so every ratio
//! compares figures measured minutes apart on the same machine:
//!
//! 1. **Checkpoint.** The load benchmark's generated Qwen2-MoE checkpoint (`--size-mb`, default
//!    600 MB, under `target/bench-checkpoint/`), generated once and reused.
//! 2. **Linear layouts.** One Linear forward (`[b, s, 1024] x [1024, n]`) per backend and prefill
//!    shape, with the weight as a contiguous `[in, out]` tensor and as a transposed view of the
//!    checkpoint's `[out, in]`: why the loader transposes during its copy.
//! 3. **Models**, per backend: `LoadFamily::load` unpatched (default contiguous layout), unpatched
//!    with `LinearLayout::TransposedView` (the layout before issue 11), fused QKV, and the seed
//!    patcher (fused QKV + `SequentialExperts`), plus the unpatched model after every parameter
//!    is copied into a fresh contiguous tensor (the "native" reference of the issue). For each
//!    prefill shape, one warm-up forward each, then `--rounds` interleaved rounds (default 3);
//!    the medians are reported. Inputs are deterministic token ids; each forward reads its logits
//!    back (the work is done). The variants' logits are compared with the unpatched model's.
//! 4. **transformers**: `scripts/bench_transformers_forward.py DIR`, `attn_implementation` and
//!    `experts_implementation` `"eager"`, `torch.set_num_threads(--threads)` (default: the
//!    cores Burn's thread pools use), same shapes and rounds; skipped when Python lacks it.
//!
//! Columns: `time s` median seconds of one forward; `tok/s` prefill tokens per second;
//! `x native` time over the native-copy model's (1.00 = as fast as contiguous weights; the
//! issue's target is within 1.02); `x transformers` our tokens/s over transformers' (the target
//! is at least 1.00).

#[path = "../bench/mod.rs"]
mod bench;

use bench::breakdown::{breakdown, print_breakdown};
use bench::checkpoint::{benchmark_checkpoint, Shape};
use bench::cli::{default_checkpoint_dir, unknown, Cli};
use bench::inputs::{input_ids, Contiguous};
use bench::layouts::{linear_layouts, timed};
use bench::stats::{load_average, median};
use bench::table::Table;
use bench::transformers::forward_times;
use bench::Error;
use burn::module::Module;
use burn::prelude::*;
use burn_patcher::{LinearLayout, LoadOptions, Patcher};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

struct Args {
    dir: std::path::PathBuf,
    /// Whether `--dir` gave it (then it is read, never written).
    dir_given: bool,
    size_mb: u64,
    rounds: usize,
    shapes: Vec<(usize, usize)>,
    backends: Vec<String>,
    threads: usize,
    transformers: bool,
    /// The model variants to run, by key (`native`, `unpatched`, `views`, `fused`, `seed`).
    models: Vec<String>,
    /// Whether to time the Linear layouts.
    layouts: bool,
    /// Whether to time each part of the forward (`bench::breakdown`).
    breakdown: bool,
}

impl Args {
    fn parse() -> Result<Self, Error> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut args = Self {
            dir: default_checkpoint_dir(),
            dir_given: false,
            size_mb: 600,
            rounds: 3,
            shapes: vec![(1, 128), (4, 512)],
            backends: vec!["ndarray".into(), "flex".into()],
            threads: cores,
            transformers: true,
            models: MODELS.iter().map(|m| m.to_string()).collect(),
            layouts: true,
            breakdown: false,
        };
        let mut cli = Cli::new();
        while let Some(flag) = cli.flag() {
            match flag.as_str() {
                "--dir" => {
                    args.dir = cli.value(&flag)?.into();
                    args.dir_given = true;
                }
                "--size-mb" => args.size_mb = cli.parsed(&flag)?,
                "--rounds" => args.rounds = cli.count(&flag)?,
                "--threads" => args.threads = cli.count(&flag)?,
                "--shapes" => {
                    args.shapes = cli
                        .value(&flag)?
                        .split(',')
                        .map(|s| -> Result<(usize, usize), Error> {
                            let (b, t) = s
                                .split_once('x')
                                .ok_or(format!("a shape is BATCHxTOKENS, like 1x128, not `{s}`"))?;
                            Ok((b.parse()?, t.parse()?))
                        })
                        .collect::<Result<_, _>>()?
                }
                "--backends" => {
                    args.backends = cli.value(&flag)?.split(',').map(Into::into).collect()
                }
                "--no-transformers" => args.transformers = false,
                "--no-layouts" => args.layouts = false,
                "--breakdown" => args.breakdown = true,
                "--models" => {
                    args.models = cli.value(&flag)?.split(',').map(Into::into).collect();
                    if let Some(bad) = args.models.iter().find(|m| !MODELS.contains(&m.as_str())) {
                        return Err(format!("unknown model `{bad}` (one of {MODELS:?})").into());
                    }
                }
                "-h" | "--help" => {
                    println!(
                        "usage: forward_benchmark [--dir DIR] [--size-mb N] [--rounds N] \
                         [--shapes 1x128,4x512] [--backends ndarray,flex] [--threads N] \
                         [--no-transformers] [--no-layouts] [--breakdown] \
                         [--models native,unpatched,views,fused,seed]"
                    );
                    std::process::exit(0);
                }
                other => return Err(unknown(other)),
            }
        }
        Ok(args)
    }
}

/// The model variants, by key: the native copy, unpatched, unpatched with transposed views,
/// fused QKV, the seed patcher.
const MODELS: [&str; 5] = ["native", "unpatched", "views", "fused", "seed"];

/// One measured row.
struct Row {
    backend: String,
    what: String,
    shape: (usize, usize),
    seconds: f64,
    /// Time over the reference row's (the native copy, or the contiguous Linear).
    x_reference: f64,
    /// Largest logit difference from the unpatched model (models only).
    diff: Option<f32>,
}

fn run() -> Result<(), Error> {
    let args = Args::parse()?;
    let shape = Shape::for_size(args.size_mb);
    benchmark_checkpoint(args.dir_given.then_some(args.dir.as_path()), &shape)?;
    println!(
        "threads: {} (Burn's thread pools use every core); load average {:.2}",
        args.threads,
        load_average()
    );
    let mut layouts = Vec::new();
    let mut rows = Vec::new();
    for backend in &args.backends {
        match backend.as_str() {
            "ndarray" => {
                let device = Default::default();
                if args.layouts {
                    layouts.extend(linear_layouts::<burn::backend::NdArray>(
                        "ndarray",
                        &args.shapes,
                        args.rounds,
                        &device,
                    ));
                }
                rows.extend(models::<burn::backend::NdArray>("ndarray", &args, &device)?);
            }
            #[cfg(feature = "flex")]
            "flex" => {
                let device = Default::default();
                if args.layouts {
                    layouts.extend(linear_layouts::<burn::backend::Flex>(
                        "flex",
                        &args.shapes,
                        args.rounds,
                        &device,
                    ));
                }
                rows.extend(models::<burn::backend::Flex>("flex", &args, &device)?);
            }
            other => {
                return Err(format!(
                    "backend `{other}` is not built in (ndarray; flex with `--features flex`)"
                )
                .into())
            }
        }
    }
    let transformers = if args.transformers {
        forward_times(&args.dir, args.threads, args.rounds, &args.shapes)?
    } else {
        Vec::new()
    };

    println!("\nOne Linear forward, weight [1024, n], by layout (x contiguous: view time over contiguous):\n");
    let mut table = Table::new([
        ("backend", 0),
        ("prefill", 0),
        ("n", 0),
        ("contiguous GFLOP/s", 0),
        ("transposed view GFLOP/s", 0),
        ("x contiguous", 0),
    ]);
    for (backend, (b, s), n, contiguous, view) in &layouts {
        let flops = 2.0 * (b * s * 1024 * n) as f64;
        table.row(vec![
            backend.clone(),
            format!("{b}x{s}"),
            n.to_string(),
            format!("{:.1}", flops / contiguous / 1e9),
            format!("{:.1}", flops / view / 1e9),
            format!("{:.2}", view / contiguous),
        ]);
    }
    print!("{}", table.markdown());
    println!(
        "\nPrefill forward of the loaded model, medians of {} rounds:\n",
        args.rounds
    );
    let mut table = Table::new([
        ("backend", 0),
        ("model", 0),
        ("prefill", 0),
        ("time s", 0),
        ("tok/s", 0),
        ("x native", 0),
        ("x transformers", 0),
        ("max logit diff", 0),
    ]);
    for row in &rows {
        let tokens = (row.shape.0 * row.shape.1) as f64;
        let theirs = transformers
            .iter()
            .find(|(s, _)| *s == row.shape)
            .map(|(_, t)| format!("{:.2}", t / row.seconds))
            .unwrap_or_else(|| "-".into());
        table.row(vec![
            row.backend.clone(),
            row.what.clone(),
            format!("{}x{}", row.shape.0, row.shape.1),
            format!("{:.3}", row.seconds),
            format!("{:.0}", tokens / row.seconds),
            format!("{:.2}", row.x_reference),
            theirs,
            row.diff.map_or("-".into(), |d| format!("{d:.1e}")),
        ]);
    }
    for ((b, s), seconds) in &transformers {
        table.row(vec![
            "torch".into(),
            "transformers 5.23 eager".into(),
            format!("{b}x{s}"),
            format!("{seconds:.3}"),
            format!("{:.0}", (b * s) as f64 / seconds),
            "-".into(),
            "1.00".into(),
            "-".into(),
        ]);
    }
    print!("{}", table.markdown());
    println!("\nload average after: {:.2}", load_average());
    Ok(())
}

fn models<B: Backend>(name: &str, args: &Args, device: &B::Device) -> Result<Vec<Row>, Error> {
    let config = Qwen2MoeConfig::from_file(args.dir.join("config.json"))?;
    let load = |patcher: &Patcher<B>, layout: LinearLayout| {
        Pretrained::<B>::from_path(&args.dir)
            .patcher(patcher)
            .options(LoadOptions::default().linear_layout(layout))
            .load::<Qwen2MoeForCausalLm<B>>(device)
            .map(|loaded| loaded.model)
    };
    let wanted = |key: &str| args.models.iter().any(|m| m == key);
    let unpatched = load(&Patcher::new(), LinearLayout::Contiguous)?;
    let mut models = Vec::new();
    if wanted("native") {
        models.push((
            "native copy (reference)",
            unpatched.clone().map(&mut Contiguous),
        ));
    }
    if wanted("unpatched") {
        models.push(("unpatched", unpatched.clone()));
    }
    if wanted("views") {
        let model = load(&Patcher::new(), LinearLayout::TransposedView)?;
        models.push(("unpatched, transposed views", model));
    }
    if wanted("fused") {
        let patcher = Patch::fused_qkv().patcher(&config)?;
        models.push(("fused QKV", load(&patcher, LinearLayout::Contiguous)?));
    }
    if wanted("seed") {
        let patcher = Patch::seed().patcher(&config)?;
        models.push(("seed patcher", load(&patcher, LinearLayout::Contiguous)?));
    }
    let mut rows = Vec::new();
    for &(b, s) in &args.shapes {
        let ids = input_ids::<B>(b, s, config.core.vocab_size, device);
        let forward = |model: &Qwen2MoeForCausalLm<B>| model.forward(ids.clone()).into_data();
        let reference = forward(&unpatched);
        let reference: Vec<f32> = reference.iter::<f32>().collect();
        let mut diffs = Vec::new();
        for (_, model) in &models {
            let logits: Vec<f32> = forward(model).iter::<f32>().collect();
            let diff = logits
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            diffs.push(diff);
        }
        let mut times = vec![Vec::new(); models.len()];
        for _ in 0..args.rounds {
            for (i, (_, model)) in models.iter().enumerate() {
                times[i].push(timed(|| forward(model)));
            }
        }
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        let native = models
            .iter()
            .position(|(what, _)| what.starts_with("native"));
        for (i, (what, _)) in models.iter().enumerate() {
            rows.push(Row {
                backend: name.to_string(),
                what: what.to_string(),
                shape: (b, s),
                seconds: medians[i],
                x_reference: native.map_or(f64::NAN, |n| medians[i] / medians[n]),
                diff: Some(diffs[i]),
            });
        }
        if args.breakdown {
            for (what, model) in &models {
                let parts = breakdown(model, &config, ids.clone(), args.rounds);
                print_breakdown(&format!("{name}, {what}, {b}x{s}"), &parts);
            }
        }
        eprintln!("{name} {b}x{s}: done");
    }
    Ok(rows)
}
