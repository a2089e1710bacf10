//! Speed and memory of loading a transformers checkpoint (issue 4, item 7; issue 11).
//!
//! ```text
//! cargo run --release --example load_benchmark -- [--dir DIR] [--size-mb N] [--repeats N]
//!                                                 [--threads N] [--no-transformers]
//! ```
//!
//! One run does everything:
//!
//! 1. **Checkpoint.** Generates a Qwen2-MoE checkpoint of about `--size-mb` MB (default 600) in
//!    f32 under `DIR` (default `target/bench-checkpoint/`): a `config.json` that transformers'
//!    `Qwen2MoeConfig` accepts (hidden 1024, 16 heads over 4 KV heads, q/k/v biases, 16 experts
//!    of width 512 with top-2 routing, a shared expert of width 2048, vocabulary 8192; the
//!    number of layers sets the size) and a `model.safetensors` with the keys transformers saves
//!    (per-expert `mlp.experts.E.{gate,up,down}_proj.weight`, separate `q/k/v_proj`, ...), filled
//!    with deterministic pseudo-random values. A folder whose `bench.key` matches the wanted
//!    configuration is reused as is.
//! 2. **Warm-up.** Reads the whole file once, so every contender finds it in the page cache and
//!    none pays for the disk.
//! 3. **Contenders**, each in its own child process (this program re-executed with `--mode`),
//!    so the peak resident set of one cannot hide in another's; `--repeats` rounds (default 3),
//!    interleaved, and the medians are reported:
//!    - `memcpy, 1 thread` and `memcpy, N threads`: read every tensor's bytes from the file
//!      (warm in the page cache) with one positioned read each into freshly allocated buffers
//!      (each byte copied once, by the kernel; the loader reads the same way). The faster of
//!      the two is the lower bound the others are compared with.
//!    - `burn-patcher, seed patcher`: `Pretrained::build` with the seed's patcher
//!      (q/k/v concatenated into `FusedQKVAttention`, experts as `SequentialExperts`) into
//!      `patcher-models`' `Qwen2MoeForCausalLM` on NdArray f32.
//!    - `burn-patcher, fused QKV + merged experts`: the same call patching only the attention:
//!      q/k/v are concatenated into `qkv_proj`, and the model's default conversions merge the
//!      per-expert linears into the fused `gate_up_proj [E, 2I, H]` and `down_proj [E, H, I]`
//!      (`MergeModulelist` + `Concatenate`), as transformers does: expert merging and QKV fusion
//!      in one load.
//!    - `the same + check_finite`: that load with `LoadOptions::check_finite` (NaN/Inf counted
//!      per tensor on the host bytes), to measure the check's cost.
//!    - `burn-patcher, seed, Linear as views`: the seed patcher's load with
//!      `LinearLayout::TransposedView` (the checkpoint's `[out, in]` bytes kept, as before issue
//!      11): what the default tiled transpose into contiguous `[in, out]` costs at load time.
//!    - `burn-patcher, seed, 8-bit Linear weights`: the seed patcher's load with
//!      `LoadOptions::quantize` (8-bit symmetric per tensor, native store): every Linear weight
//!      (each expert's too) is quantized as it is loaded; its peak RSS added is compared with the
//!      quantized model's bytes; at most 64 MiB in flight. Its values differ from the
//!      checkpoint's by design (no checksum).
//!    - `burn-store SafetensorsStore`: burn-store 0.21 with its `PyTorchToBurnAdapter` loading
//!      the same file with no conversion into a model whose parameters match the checkpoint's
//!      keys one to one (the Qwen2-MoE model with `SequentialExperts` and separate q/k/v).
//!    - `transformers`: `scripts/bench_transformers.py DIR`, i.e.
//!      `Qwen2MoeForCausalLM.from_pretrained(DIR, dtype=torch.float32)` on CPU (merging the
//!      experts as it loads); skipped when python3 cannot import transformers.
//!
//! Each child times only the load call (model construction is lazy and included; the Burn
//! models allocate their parameters when loaded) and measures the peak resident memory it adds:
//! `VmHWM` after the call minus `VmRSS` just before it, the peak being reset first through
//! `/proc/self/clear_refs` (Linux). The page cache holding the file is not the process' memory.
//! Each child also sums every loaded parameter in f64; the sums and element counts must match the
//! checkpoint's (a wrong or missing tensor fails the run), whatever the layout.
//!
//! ## Reading the table
//!
//! - `time s`: median seconds of the load call; `GB/s`: checkpoint tensor bytes (10^9) per second;
//!   `x memcpy`: that throughput over the memcpy lower bound (1.00 is as fast as a plain copy);
//! - `peak RSS+ MB`: peak resident memory added by the call (10^6 bytes); `x ckpt`: over the
//!   checkpoint's tensor bytes (1.00 is the loaded model alone); `kept MB`: resident memory added
//!   and still held after the call (the model);
//! - `x transformers`: load time over transformers' (below 1.00 is faster).
//!
//! Run it on an idle machine: the load average is printed, with a warning when it is high.
//! Other busy processes distort the times unevenly (two CPU hogs on 2 cores slowed transformers,
//! whose torch threads spin, about 4x and burn-patcher about 1.2x); the memory figures do not
//! depend on it.
//!
//! The issues' targets are then checked for burn-patcher (both rows): load time at most
//! transformers', throughput at least 0.9x memcpy, peak RSS added at most 1.1x the checkpoint;
//! and for the 8-bit load, peak RSS added at most 1.1x the quantized model plus the bytes in flight.
//! The last line, `SUMMARY {...}`, is the same figures as one JSON object.
//!
//! `--tensor-parallel N` measures instead each of N tensor-parallel peers' load (every peer in
//! its own process, one after the other, as N machines would each load theirs) against the
//! single-device load, for the seed patcher and the merged experts: time, checkpoint bytes read
//! and peak RSS added per peer (see `tensor_parallel.rs`).

#[path = "../bench/mod.rs"]
mod bench;
mod tensor_parallel;

use std::path::PathBuf;

use bench::checkpoint::{benchmark_checkpoint, tensor_bytes, Shape};
use bench::checksum::Checksum;
use bench::cli::{default_checkpoint_dir, unknown, Cli};
use bench::json::Object;
use bench::load_child::{run_contender, Measure};
use bench::memcpy::{memcpy, warm_up};
use bench::memory::measured;
use bench::rounds::{interleaved, Outcome};
use bench::stats::load_average;
use bench::table::Table;
use bench::Error;
use burn::backend::NdArray;
use burn::tensor::quantization::{QuantScheme, QuantStore};
use burn_patcher::{Checkpoint, LinearLayout, LoadOptions};
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;

type B = NdArray<f32>;

/// The loader's default thread count (`LoadOptions::default()`).
const DEFAULT_THREADS: usize = 4;
/// The bytes in flight of the 8-bit load: a quantized load holds at most this much full-precision
/// data at a time, so a small bound keeps its peak near the quantized model's size.
const Q8_IN_FLIGHT: u64 = 64 << 20;

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let args = Args::parse()?;
    match (&args.mode, args.peers) {
        (Some(mode), _) => child(mode, &args),
        (None, Some(peers)) => tensor_parallel::parent(&args, peers),
        (None, None) => parent(&args),
    }
}

struct Args {
    dir: PathBuf,
    /// Whether `--dir` gave it (then it is read, never written).
    dir_given: bool,
    size_mb: u64,
    repeats: usize,
    threads: usize,
    transformers: bool,
    /// `--tensor-parallel N`: the peers' table instead of the contenders'.
    peers: Option<usize>,
    mode: Option<String>,
}

impl Args {
    fn parse() -> Result<Self, Error> {
        let mut args = Self {
            dir: default_checkpoint_dir(),
            dir_given: false,
            size_mb: 600,
            repeats: 3,
            threads: DEFAULT_THREADS,
            transformers: true,
            peers: None,
            mode: None,
        };
        let mut cli = Cli::new();
        while let Some(flag) = cli.flag() {
            match flag.as_str() {
                "--dir" => {
                    args.dir = cli.value(&flag)?.into();
                    args.dir_given = true;
                }
                "--size-mb" => args.size_mb = cli.parsed(&flag)?,
                "--repeats" => args.repeats = cli.count(&flag)?,
                "--threads" => args.threads = cli.count(&flag)?,
                "--no-transformers" => args.transformers = false,
                "--tensor-parallel" => args.peers = Some(cli.count(&flag)?),
                "--mode" => args.mode = Some(cli.value(&flag)?),
                "-h" | "--help" => {
                    println!(
                        "usage: load_benchmark [--dir DIR] [--size-mb N] [--repeats N] \
                         [--threads N] [--no-transformers] [--tensor-parallel N]\n\
                         (defaults: target/bench-checkpoint, 600 MB, 3 rounds, 4 threads)"
                    );
                    std::process::exit(0);
                }
                other => return Err(unknown(other)),
            }
        }
        if args.size_mb < 100 {
            return Err("--size-mb must be at least 100".into());
        }
        Ok(args)
    }
}

/// The contenders, in the table's order: `(key, label)`; the key is the child's `--mode`.
const CONTENDERS: [(&str, &str); 9] = [
    ("memcpy-1", "memcpy, 1 thread"),
    ("memcpy-n", "memcpy, N threads"),
    (
        "patcher-seed",
        "burn-patcher, seed patcher (QKV+SeqExperts)",
    ),
    ("patcher-merged", "burn-patcher, fused QKV + merged experts"),
    (
        "patcher-finite",
        "  the same + check_finite (NaN/Inf counts)",
    ),
    (
        "patcher-views",
        "burn-patcher, seed, Linear as views (no transp.)",
    ),
    ("patcher-q8", "burn-patcher, seed, 8-bit Linear weights"),
    ("burn-store", "burn-store SafetensorsStore (1:1 keys)"),
    ("transformers", "transformers from_pretrained"),
];

/// A child: one load, measured, its `RESULT` line printed.
fn child(mode: &str, args: &Args) -> Result<(), Error> {
    let dir = &args.dir;
    let device = Default::default();
    let config = Qwen2MoeConfig::from_file(dir.join("config.json"))?;
    let options = LoadOptions::default().threads(args.threads);
    let measure = match mode {
        "memcpy-1" | "memcpy-n" => {
            let threads = if mode == "memcpy-1" { 1 } else { args.threads };
            let (buffers, usage) = measured(|| memcpy(dir, threads))?;
            let loaded = Checksum::of_f32_bytes(&buffers);
            Measure { usage, loaded, bytes_read: 0 }
        }
        "patcher-seed" | "patcher-merged" | "patcher-finite" | "patcher-views" | "patcher-q8" => {
            let patch = if matches!(mode, "patcher-merged" | "patcher-finite") {
                Patch::fused_qkv()
            } else {
                Patch::seed()
            };
            let patcher = patch.patcher::<B, _>(&config)?;
            let options = match mode {
                "patcher-views" => options.linear_layout(LinearLayout::TransposedView),
                "patcher-finite" => options.check_finite(),
                // 8-bit symmetric per-tensor Linear weights, in the store NdArray implements.
                "patcher-q8" => options
                    .quantize(QuantScheme::default().with_store(QuantStore::Native))
                    .max_bytes_in_flight(Q8_IN_FLIGHT),
                _ => options,
            };
            let (loaded, usage) = measured(|| {
                let pretrained = Pretrained::from_path(dir)
                    .patcher(&patcher)
                    .options(options);
                Ok(pretrained.build(&device, |ctx| Qwen2MoeForCausalLm::build(&config, ctx))?)
            })?;
            let report = &loaded.report;
            if !report.missing.is_empty() || !report.unexpected.is_empty() {
                return Err(format!("the load was not clean:\n{report}").into());
            }
            let bytes_read = loaded.bytes_read;
            let loaded = Checksum::of::<B, _>(&loaded.model);
            Measure { usage, loaded, bytes_read }
        }
        "burn-store" => {
            let (model, usage) = measured(|| {
                // Separate q/k/v and per-expert linears: the checkpoint's keys, one to one.
                let patcher = Patch::sequential_experts().patcher::<B, _>(&config)?;
                let mut model = Qwen2MoeForCausalLm::<B>::with_patcher(&config, &patcher, &device)?;
                // `skip_enum_variants`: a layer's `mlp` is an enum (sparse or dense).
                let mut store = SafetensorsStore::from_file(dir.join("model.safetensors"))
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .skip_enum_variants(true);
                let result = model.load_from(&mut store)?;
                if !result.is_success() || !result.missing.is_empty() || !result.unused.is_empty() {
                    return Err(format!("burn-store did not load everything:\n{result}").into());
                }
                Ok(model)
            })?;
            let loaded = Checksum::of::<B, _>(&model);
            Measure { usage, loaded, bytes_read: 0 }
        }
        peer if peer.starts_with("tp") => tensor_parallel::peer_child(peer, &config, dir, options)?,
        other => return Err(format!("unknown mode `{other}`").into()),
    };
    println!("{}", measure.line());
    Ok(())
}

/// The parent: checkpoint, warm-up, children in interleaved rounds, table, targets, summary.
fn parent(args: &Args) -> Result<(), Error> {
    let shape = Shape::for_size(args.size_mb);
    benchmark_checkpoint(args.dir_given.then_some(args.dir.as_path()), &shape)?;
    let checkpoint = Checkpoint::open(&args.dir)?;
    let bytes = tensor_bytes(&checkpoint) as f64;
    let tensors = checkpoint.len();
    drop(checkpoint);
    let (file_bytes, warm_seconds) = warm_up(&args.dir.join("model.safetensors"))?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_before = load_average();
    println!("checkpoint: {}", shape.describe());
    println!(
        "            {tensors} tensors, {:.1} MB of tensor data ({:.1} MB file)",
        bytes / 1e6,
        file_bytes as f64 / 1e6
    );
    println!(
        "warm-up read: {:.2} s ({:.2} GB/s from the page cache); {cores} CPU cores; loader \
         threads {}; {} rounds, medians reported",
        warm_seconds,
        file_bytes as f64 / warm_seconds / 1e9,
        args.threads,
        args.repeats
    );

    let contenders: Vec<(&str, String)> = CONTENDERS
        .iter()
        .filter(|(key, _)| args.transformers || *key != "transformers")
        .map(|&(key, label)| (key, label.replace(" N ", &format!(" {} ", args.threads))))
        .collect();
    let mut info: Option<String> = None;
    let mut round = 0;
    let outcomes = interleaved(
        contenders.len(),
        args.repeats,
        |i| {
            if i == 0 {
                round += 1;
                eprint!(
                    "{}round {round}/{}:",
                    if round > 1 { "\n" } else { "" },
                    args.repeats
                );
            }
            eprint!(" {}", contenders[i].0);
        },
        |i| {
            let (measure, line) = run_contender(contenders[i].0, &args.dir, args.threads)?;
            info = info.take().or(line);
            Ok(measure)
        },
    );
    eprintln!();
    let outcome = |key: &str| {
        let i = contenders.iter().position(|(k, _)| *k == key)?;
        Some(&outcomes[i])
    };
    let seconds = |key: &str| outcome(key)?.median(|m| m.usage.seconds);

    // Every contender must have loaded the same values; a quantized load holds other values
    // than the checkpoint's, by design.
    let reference = outcomes.iter().find_map(|o| Some(o.measures()?[0].loaded));
    let mut mismatches = Vec::new();
    for ((key, _), outcome) in contenders.iter().zip(&outcomes) {
        let (Some(reference), Some(measures)) = (reference, outcome.measures()) else {
            continue;
        };
        for m in measures.iter().filter(|_| *key != "patcher-q8") {
            if !m.loaded.matches(&reference) {
                mismatches.push(format!(
                    "{key}: {} values summing to {} (checkpoint: {} values, sum {})",
                    m.loaded.count, m.loaded.sum, reference.count, reference.sum
                ));
            }
        }
    }

    let memcpy_seconds = ["memcpy-1", "memcpy-n"]
        .into_iter()
        .filter_map(seconds)
        .fold(f64::INFINITY, f64::min);
    let memcpy_gbps = bytes / memcpy_seconds / 1e9;
    let transformers = seconds("transformers");

    // The table.
    let mut table = Table::new([
        ("contender", 44),
        ("time s", 8),
        ("GB/s", 7),
        ("x memcpy", 8),
        ("peak RSS+ MB", 13),
        ("x ckpt", 7),
        ("kept MB", 9),
        ("x transformers", 14),
    ]);
    let mut summary = Object::new();
    for ((key, label), outcome) in contenders.iter().zip(&outcomes) {
        let (Some(s), Some(added), Some(kept)) = (
            outcome.median(|m| m.usage.seconds),
            outcome.median(|m| m.usage.rss_added as f64),
            outcome.median(|m| m.usage.rss_kept as f64),
        ) else {
            table.note(label.as_str(), outcome.why());
            summary = summary.object(key, Object::new().text("status", outcome.why()));
            continue;
        };
        let gbps = bytes / s / 1e9;
        let vs_transformers = transformers.map_or("-".into(), |t| format!("{:.2}", s / t));
        table.row(vec![
            label.clone(),
            format!("{s:.3}"),
            format!("{gbps:.2}"),
            format!("{:.2}", gbps / memcpy_gbps),
            format!("{:.1}", added / 1e6),
            format!("{:.2}", added / bytes),
            format!("{:.1}", kept / 1e6),
            vs_transformers,
        ]);
        let row = Object::new()
            .number("seconds", s, 6)
            .number("gbps", gbps, 4)
            .number("x_memcpy", gbps / memcpy_gbps, 4)
            .number("rss_added_bytes", added, 0)
            .number("x_checkpoint", added / bytes, 4)
            .number("rss_kept_bytes", kept, 0);
        summary = summary.object(key, row);
    }
    print!("\n{}", table.aligned());
    if let Some(q8) = outcome("patcher-q8").filter(|o| o.measures().is_some()) {
        let model_bytes = q8.measures().map_or(0.0, |m| m[0].loaded.bytes as f64);
        let added = q8.median(|m| m.usage.rss_added as f64).unwrap_or(0.0);
        println!(
            "8-bit load: the quantized model holds {:.1} MB; peak RSS added {:.1} MB = {:.2}x \
             it (the bound: 1.1x plus the 64 MiB in flight, {:.1} MB)",
            model_bytes / 1e6,
            added / 1e6,
            added / model_bytes.max(1.0),
            (1.1 * model_bytes + Q8_IN_FLIGHT as f64) / 1e6
        );
    }
    if let Some(info) = &info {
        println!("({info})");
    }
    println!(
        "(1-minute load average before the run {load_before:.2}, on {cores} cores: times are \
         only comparable on an otherwise idle machine)"
    );
    // Only the load before the run tells of other processes: the run itself raises it.
    if load_before > 0.5 * cores.max(1) as f64 {
        // Measured: two busy processes on 2 cores slow transformers (torch's OpenMP threads)
        // about 4x and burn-patcher about 1.2x, so the time ratios are not to be trusted.
        println!(
            "WARNING: the machine was busy during the run; rerun on an idle machine before \
             comparing times (memory figures are unaffected)"
        );
    }
    println!(
        "(x memcpy: against the faster memcpy, {memcpy_gbps:.2} GB/s; x ckpt: against {:.1} MB \
         of tensor data)",
        bytes / 1e6
    );

    // The targets of issue 4, item 7, as issue 11 raised them (throughput 0.9x), and issue 11's
    // bound on the 8-bit load's memory.
    println!("\ntargets (issues 4 and 11) for burn-patcher:");
    let mut targets = Object::new();
    for key in ["patcher-seed", "patcher-merged"] {
        let Some(o) = outcome(key) else { continue };
        let (Some(s), Some(added)) = (
            o.median(|m| m.usage.seconds),
            o.median(|m| m.usage.rss_added as f64),
        ) else {
            continue;
        };
        let gbps_ratio = bytes / s / 1e9 / memcpy_gbps;
        let rss_ratio = added / bytes;
        let mut check = |what: &str, pass: bool, detail: String| {
            let verdict = if pass { "PASS" } else { "MISS" };
            println!("  {verdict}  {key}: {what}: {detail}");
            targets = std::mem::take(&mut targets).raw(&format!("{key}/{what}"), pass);
        };
        if let Some(t) = transformers {
            let detail = format!("{s:.3} s vs {t:.3} s ({:.2}x)", s / t);
            check("time <= transformers", s <= t, detail);
        }
        let detail = format!("{gbps_ratio:.2}x");
        check("throughput >= 0.9x memcpy", gbps_ratio >= 0.9, detail);
        let detail = format!("{rss_ratio:.2}x");
        check(
            "peak RSS added <= 1.1x checkpoint",
            rss_ratio <= 1.1,
            detail,
        );
    }
    if let Some(q8) = outcome("patcher-q8").filter(|o| o.measures().is_some()) {
        let model_bytes = q8.measures().map_or(0.0, |m| m[0].loaded.bytes as f64);
        let added = q8.median(|m| m.usage.rss_added as f64).unwrap_or(0.0);
        let bound = 1.1 * model_bytes + Q8_IN_FLIGHT as f64;
        let pass = added <= bound;
        let verdict = if pass { "PASS" } else { "MISS" };
        println!(
            "  {verdict}  patcher-q8: peak RSS added <= 1.1x quantized + in flight: {:.1} MB vs \
             {:.1} MB",
            added / 1e6,
            bound / 1e6
        );
        targets = targets.raw(
            "patcher-q8/peak RSS added <= 1.1x quantized + in flight",
            pass,
        );
    }
    if !mismatches.is_empty() {
        println!("\nloaded values differ from the checkpoint:");
        for m in &mismatches {
            println!("  {m}");
        }
    } else if let Some(reference) = reference {
        println!(
            "\nevery contender loaded the checkpoint's {} values (f64 sum {:.6})",
            reference.count, reference.sum
        );
    }

    // One JSON line for scripts.
    let json = Object::new()
        .raw("checkpoint_bytes", bytes)
        .raw("tensors", tensors)
        .raw("layers", shape.layers)
        .raw("threads", args.threads)
        .raw("rounds", args.repeats)
        .raw("cores", cores)
        .number("load_average_before", load_before, 2)
        .number("memcpy_gbps", memcpy_gbps, 4)
        .object("contenders", summary)
        .object("targets", targets)
        .raw("values_match", mismatches.is_empty());
    println!("\nSUMMARY {json}");

    if !mismatches.is_empty() {
        return Err("a contender loaded different values (see above)".into());
    }
    let failed = |(key, o): (&(&str, String), &Outcome<Measure>)| {
        matches!(o, Outcome::Failed(_)) && key.0 != "transformers"
    };
    if contenders.iter().zip(&outcomes).any(failed) {
        return Err("a contender failed (see above)".into());
    }
    Ok(())
}
