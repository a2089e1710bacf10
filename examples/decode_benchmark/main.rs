//! Speed of `generate` (issue 18): prefill and decode apart, ours on the CPU backends, unpatched,
//! with fused QKV, with the seed's patch and 8-bit, beside transformers' `generate`.
//!
//! ```text
//! cargo run --release --example decode_benchmark --features flex -- [--dir DIR] [--size-mb N]
//!     [--prompt 128] [--new 128] [--batches 1,4] [--backends ndarray,flex] [--threads N]
//!     [--rounds N] [--models unpatched,fused,seed,int8] [--no-transformers]
//! ```
//!
//! One run does everything, ours then transformers' in a child process, so every ratio
//! compares figures measured minutes apart on the same machine:
//!
//! 1. **Checkpoint.** `--dir DIR` is any causal-LM checkpoint of a family the kit has (read,
//!    never written); without it, the load benchmark's generated Qwen2-MoE checkpoint
//!    (`--size-mb`, default 600 MB, under `target/bench-checkpoint/`), generated once and
//!    reused.
//! 2. **Ours**, per backend and model (`AutoModelForCausalLm`): unpatched, fused QKV, the seed
//!    patch (where the family takes it) and the 8-bit load (the backend's own scheme on every
//!    Linear weight). For each batch size, the deterministic prompt of `--prompt` tokens
//!    (SplitMix64, as the forward benchmark's), then `generate` of exactly `--new` greedy tokens
//!    (no EOS stop) through the KV cache. The prefill is the time to the first new token
//!    (forward and sampling), the decode the time of the others. One warm-up, then `--rounds`
//!    runs (default 1); medians.
//! 3. **transformers**: `scripts/bench_transformers_generate.py DIR` (eager attention and
//!    experts, `DynamicCache`, `torch.set_num_threads(--threads)`), the same prompt and counts;
//!    its first row's tokens are compared with ours (unpatched, f32); skipped when Python lacks
//!    it.
//! 4. **llama.cpp**, with `--llama-cpp LLAMA_CPP` (a llama.cpp tree with `llama-bench` built):
//!    `scripts/bench_llamacpp.py` converts DIR to an f32 GGUF in a temporary folder with
//!    llama.cpp's own converter and runs `llama-bench` (one sequence, the same prompt and new
//!    tokens and threads); our batch-1 rows against it. Its help says how to build it from the
//!    `llama-cpp-python` sdist.
//!
//! Columns: `prefill tok/s` prompt tokens per second; `decode tok/s` new tokens (after the
//! first) per second, over the batch; `x transformers` ours over transformers' tokens/s;
//! `cache MB` the KV cache at the end (`2 x layers x batch x kv_heads x head_dim x (prompt +
//! new) x 4 bytes`, the same for transformers' `DynamicCache` in f32).

#[path = "../bench/mod.rs"]
mod bench;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bench::checkpoint::{benchmark_checkpoint, Shape};
use bench::child;
use bench::cli::{unknown, Cli};
use bench::inputs::input_ids;
use bench::stats::{load_average, median};
use bench::table::Table;
use bench::Error;
use burn::prelude::*;
use burn_patcher::{backend_quant_scheme, LoadOptions};
use patcher_models::auto::{AutoModelForCausalLm, LoadedCausalLm};
use patcher_models::common::GenerationConfig;
use patcher_models::replacements::Patch;

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

/// The model variants, by key.
const MODELS: [&str; 4] = ["unpatched", "fused", "seed", "int8"];

struct Args {
    /// The checkpoint given with `--dir` (read-only), or `None` for the generated one.
    dir: Option<PathBuf>,
    size_mb: u64,
    prompt: usize,
    new: usize,
    batches: Vec<usize>,
    backends: Vec<String>,
    threads: usize,
    rounds: usize,
    models: Vec<String>,
    transformers: bool,
    /// A llama.cpp source tree with `llama-bench` built (`--llama-cpp`).
    llama_cpp: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Self, Error> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut args = Self {
            dir: None,
            size_mb: 600,
            prompt: 128,
            new: 128,
            batches: vec![1, 4],
            backends: vec!["ndarray".into(), "flex".into()],
            threads: cores,
            rounds: 1,
            models: MODELS.iter().map(|m| m.to_string()).collect(),
            transformers: true,
            llama_cpp: None,
        };
        let list = |text: String| -> Vec<String> { text.split(',').map(Into::into).collect() };
        let mut cli = Cli::new();
        while let Some(flag) = cli.flag() {
            match flag.as_str() {
                "--dir" => args.dir = Some(cli.value(&flag)?.into()),
                "--size-mb" => args.size_mb = cli.parsed(&flag)?,
                "--prompt" => args.prompt = cli.count(&flag)?,
                "--new" => args.new = cli.count(&flag)?,
                "--threads" => args.threads = cli.count(&flag)?,
                "--rounds" => args.rounds = cli.count(&flag)?,
                "--batches" => {
                    args.batches = (list(cli.value(&flag)?).iter())
                        .map(|b| b.parse())
                        .collect::<Result<_, _>>()?
                }
                "--backends" => args.backends = list(cli.value(&flag)?),
                "--models" => {
                    args.models = list(cli.value(&flag)?);
                    if let Some(bad) = args.models.iter().find(|m| !MODELS.contains(&m.as_str())) {
                        return Err(format!("unknown model `{bad}` (one of {MODELS:?})").into());
                    }
                }
                "--no-transformers" => args.transformers = false,
                "--llama-cpp" => args.llama_cpp = Some(cli.value(&flag)?.into()),
                "-h" | "--help" => {
                    println!(
                        "usage: decode_benchmark [--dir DIR] [--size-mb N] [--prompt 128] \
                         [--new 128] [--batches 1,4] [--backends ndarray,flex] [--threads N] \
                         [--rounds N] [--models unpatched,fused,seed,int8] [--no-transformers] \
                         [--llama-cpp LLAMA_CPP]"
                    );
                    std::process::exit(0);
                }
                other => return Err(unknown(other)),
            }
        }
        if args.new < 2 {
            return Err(
                "--new must be at least 2 (the decode is the tokens after the first)".into(),
            );
        }
        Ok(args)
    }
}

/// One measured row: medians of the prefill and of the decode.
struct Row {
    backend: String,
    model: String,
    batch: usize,
    prefill: Duration,
    decode: Duration,
    /// The first row's new tokens (compared with transformers').
    tokens: Vec<i64>,
}

fn run() -> Result<(), Error> {
    let args = Args::parse()?;
    let dir = benchmark_checkpoint(args.dir.as_deref(), &Shape::for_size(args.size_mb))?;
    let sizes = Sizes::read(&dir, &args)?;
    println!(
        "checkpoint: {}; prompt {} tokens, {} new; threads: {}; load average {:.2}",
        dir.display(),
        args.prompt,
        args.new,
        args.threads,
        load_average()
    );
    let mut rows = Vec::new();
    for backend in &args.backends {
        match backend.as_str() {
            "ndarray" => rows.extend(measure::<burn::backend::NdArray>(
                "ndarray", &dir, &sizes, &args,
            )?),
            #[cfg(feature = "flex")]
            "flex" => rows.extend(measure::<burn::backend::Flex>("flex", &dir, &sizes, &args)?),
            other => {
                return Err(format!(
                    "backend `{other}` is not built in (ndarray; flex with `--features flex`)"
                )
                .into())
            }
        }
    }
    let theirs = if args.transformers {
        transformers(&dir, &args)?
    } else {
        Vec::new()
    };
    let llama = match &args.llama_cpp {
        Some(tree) => llama_cpp(&dir, tree, &args)?,
        None => {
            println!("llama.cpp: not run (give --llama-cpp LLAMA_CPP)");
            None
        }
    };
    print_table(&rows, &theirs, &args, sizes.cache_mb);
    if let Some((prefill, decode)) = llama {
        print_llama_cpp(&rows, &args, prefill, decode);
    }
    println!("\nload average after: {:.2}", load_average());
    Ok(())
}

/// Every model variant on backend `B`, every batch size.
fn measure<B: Backend>(
    name: &str,
    dir: &Path,
    sizes: &Sizes,
    args: &Args,
) -> Result<Vec<Row>, Error> {
    let device = B::Device::default();
    let auto = AutoModelForCausalLm::<B>::new();
    let mut rows = Vec::new();
    for key in &args.models {
        let (patch, options) = match key.as_str() {
            "fused" => (Patch::fused_qkv(), LoadOptions::default()),
            "seed" => (Patch::seed(), LoadOptions::default()),
            "int8" => (
                Patch::NONE,
                LoadOptions::default().quantize(backend_quant_scheme::<B>()),
            ),
            _ => (Patch::NONE, LoadOptions::default()),
        };
        let loaded = match auto.from_pretrained(dir, patch, &device, &options) {
            Ok(loaded) => loaded,
            Err(e) => {
                println!("{name} {key}: not measured ({e})");
                continue;
            }
        };
        for &batch in &args.batches {
            let (prefill, decode, tokens) =
                generate_times(loaded.as_ref(), batch, sizes.vocab, args, &device)?;
            println!(
                "{name} {key} batch {batch}: prefill {:.3} s, decode {:.3} s",
                prefill.as_secs_f64(),
                decode.as_secs_f64()
            );
            let (backend, model) = (name.to_string(), key.clone());
            rows.push(Row { backend, model, batch, prefill, decode, tokens });
        }
    }
    Ok(rows)
}

/// The medians of `--rounds` runs after a warm-up: the time to the first new token, the time
/// of the others, and the first row's tokens.
fn generate_times<B: Backend>(
    loaded: &dyn LoadedCausalLm<B>,
    batch: usize,
    vocab: usize,
    args: &Args,
    device: &B::Device,
) -> Result<(Duration, Duration, Vec<i64>), Error> {
    let ids = input_ids::<B>(batch, args.prompt, vocab, device);
    let config = GenerationConfig::default()
        .with_max_new_tokens(args.new)
        .with_eos_token_ids(Vec::new());
    let (mut prefills, mut decodes, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=args.rounds {
        let start = Instant::now();
        let mut first = None;
        let out =
            loaded
                .causal_lm()
                .generate_streaming(ids.clone(), None, &config, &mut |_, _| {
                    first.get_or_insert_with(Instant::now);
                })?;
        let end = Instant::now();
        if round == 0 {
            continue; // warm-up
        }
        let first = first.ok_or("no token was generated")?;
        prefills.push((first - start).as_secs_f64());
        decodes.push((end - first).as_secs_f64());
        tokens = out.tokens.into_iter().next().unwrap_or_default();
    }
    let seconds = |v: Vec<f64>| Duration::from_secs_f64(median(v));
    Ok((seconds(prefills), seconds(decodes), tokens))
}

/// One transformers row: medians in seconds, and its first sequence's new tokens.
struct Theirs {
    batch: usize,
    prefill: f64,
    decode: f64,
    tokens: Vec<i64>,
}

/// transformers' rows; empty when skipped.
fn transformers(dir: &Path, args: &Args) -> Result<Vec<Theirs>, Error> {
    let batches: Vec<String> = args.batches.iter().map(ToString::to_string).collect();
    let mut command = child::python("bench_transformers_generate.py");
    command
        .arg(dir)
        .args(["--threads", &args.threads.to_string()])
        .args(["--prompt", &args.prompt.to_string()])
        .args(["--new", &args.new.to_string()])
        .args(["--rounds", &args.rounds.to_string()])
        .args(["--batches", &batches.join(",")]);
    let Some(stdout) = child::run_optional(command, "bench_transformers_generate.py")? else {
        return Ok(Vec::new());
    };
    if let Some(info) = child::info_line(&stdout) {
        println!("{info}");
    }
    let mut out = Vec::new();
    for fields in child::results(&stdout) {
        let (Some(batch), Some(prefill), Some(decode), Some(tokens)) = (
            fields.get("batch"),
            fields.get("prefill"),
            fields.get("decode"),
            fields.text("tokens"),
        ) else {
            return Err("bench_transformers_generate.py: a malformed RESULT line".into());
        };
        let tokens = tokens
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        out.push(Theirs { batch, prefill, decode, tokens });
    }
    Ok(out)
}

/// llama.cpp's `(prefill, decode)` tokens/s of one sequence in f32
/// (`scripts/bench_llamacpp.py`), or `None` when skipped.
fn llama_cpp(dir: &Path, tree: &Path, args: &Args) -> Result<Option<(f64, f64)>, Error> {
    let mut command = child::python("bench_llamacpp.py");
    command
        .arg(dir)
        .arg(tree)
        .args(["--threads", &args.threads.to_string()])
        .args(["--prompt", &args.prompt.to_string()])
        .args(["--new", &args.new.to_string()]);
    let Some(stdout) = child::run_optional(command, "bench_llamacpp.py")? else {
        return Ok(None);
    };
    if let Some(info) = child::info_line(&stdout) {
        println!("{info}");
    }
    let fields = child::results(&stdout);
    let result = fields
        .first()
        .and_then(|f| Some((f.get("prefill_tps")?, f.get("decode_tps")?)));
    result
        .map(Some)
        .ok_or_else(|| "bench_llamacpp.py: no RESULT line".into())
}

/// Our batch-1 rows against llama.cpp's one sequence.
fn print_llama_cpp(rows: &[Row], args: &Args, prefill: f64, decode: f64) {
    println!("\nAgainst llama.cpp (f32, one sequence, llama-bench):\n");
    let mut table = Table::new([
        ("backend", 0),
        ("model", 0),
        ("prefill tok/s", 0),
        ("x llama.cpp", 0),
        ("decode tok/s", 0),
        ("x llama.cpp", 0),
    ]);
    for row in rows.iter().filter(|r| r.batch == 1) {
        let ours_prefill = args.prompt as f64 / row.prefill.as_secs_f64();
        let ours_decode = (args.new - 1) as f64 / row.decode.as_secs_f64();
        table.row(vec![
            row.backend.clone(),
            row.model.clone(),
            format!("{ours_prefill:.0}"),
            format!("{:.2}", ours_prefill / prefill),
            format!("{ours_decode:.1}"),
            format!("{:.2}", ours_decode / decode),
        ]);
    }
    table.row(vec![
        "llama.cpp".into(),
        "f32 GGUF".into(),
        format!("{prefill:.0}"),
        "1.00".into(),
        format!("{decode:.1}"),
        "1.00".into(),
    ]);
    print!("{}", table.markdown());
}

/// What config.json says of the model's sizes, read once: the vocabulary (the prompt's ids are
/// drawn below it) and the KV cache at the end of a batch-1 run, in MB (f32).
struct Sizes {
    vocab: usize,
    cache_mb: f64,
}

impl Sizes {
    fn read(dir: &Path, args: &Args) -> Result<Self, Error> {
        let config = std::fs::read_to_string(dir.join("config.json"))?;
        let config: serde_json::Value = serde_json::from_str(&config)?;
        let get = |key: &str| config[key].as_u64().map(|v| v as f64);
        let vocab = get("vocab_size").ok_or("config.json has no vocab_size")? as usize;
        let layers = get("num_hidden_layers")
            .or_else(|| get("n_layer"))
            .unwrap_or(0.0);
        let heads = get("num_attention_heads")
            .or_else(|| get("n_head"))
            .unwrap_or(1.0);
        let kv_heads = get("num_key_value_heads").unwrap_or(heads);
        let hidden = get("hidden_size").or_else(|| get("n_embd")).unwrap_or(0.0);
        let head_dim = get("head_dim").unwrap_or(hidden / heads);
        let positions = (args.prompt + args.new) as f64;
        let cache_mb = 2.0 * layers * kv_heads * head_dim * positions * 4.0 / 1e6;
        Ok(Self { vocab, cache_mb })
    }
}

fn print_table(rows: &[Row], theirs: &[Theirs], args: &Args, cache_mb: f64) {
    let decoded = (args.new - 1) as f64;
    println!(
        "\n`generate`, prompt {} tokens, {} new, medians of {} rounds:\n",
        args.prompt, args.new, args.rounds
    );
    let mut table = Table::new([
        ("backend", 0),
        ("model", 0),
        ("batch", 0),
        ("prefill tok/s", 0),
        ("x transformers", 0),
        ("decode tok/s", 0),
        ("x transformers", 0),
        ("cache MB", 0),
        ("tokens = transformers'", 0),
    ]);
    for row in rows {
        let b = row.batch as f64;
        let prefill = b * args.prompt as f64 / row.prefill.as_secs_f64();
        let decode = b * decoded / row.decode.as_secs_f64();
        let other = theirs.iter().find(|t| t.batch == row.batch);
        let ratio = |ours: f64, secs: f64, n: f64| format!("{:.2}", ours / (b * n / secs));
        table.row(vec![
            row.backend.clone(),
            row.model.clone(),
            row.batch.to_string(),
            format!("{prefill:.0}"),
            other.map_or("-".into(), |t| {
                ratio(prefill, t.prefill, args.prompt as f64)
            }),
            format!("{decode:.1}"),
            other.map_or("-".into(), |t| ratio(decode, t.decode, decoded)),
            format!("{:.1}", cache_mb * b),
            match (other, row.model.as_str()) {
                (Some(t), "unpatched" | "fused" | "seed") => (t.tokens == row.tokens).to_string(),
                _ => "-".into(),
            },
        ]);
    }
    for t in theirs {
        let b = t.batch as f64;
        table.row(vec![
            "torch".into(),
            "transformers 5.23 eager".into(),
            t.batch.to_string(),
            format!("{:.0}", b * args.prompt as f64 / t.prefill),
            "1.00".into(),
            format!("{:.1}", b * decoded / t.decode),
            "1.00".into(),
            format!("{:.1}", cache_mb * b),
            "-".into(),
        ]);
    }
    print!("{}", table.markdown());
}
