//! `load_benchmark --tensor-parallel N`: each peer of an N-way tensor-parallel load against the
//! single-device load of the same checkpoint.
//!
//! Every load runs in its own child process (`--mode tpN-R-patcher-seed` for peer R of N), one
//! after the other in interleaved rounds, as N machines would each load their part: a peer
//! builds `Qwen2MoeForCausalLm` from its peer config (`TensorParallelConfig::tensor_parallel`)
//! and loads with `LoadOptions::tensor_parallel`. Reported per load: time, checkpoint bytes read
//! (the loader's count), peak RSS added, and the bytes of the model it holds; each against the
//! single-device load. A peer's ideal is its model: 1/N of the split parameters plus the
//! replicated ones (embeddings, LM head, norms, routers).

use std::path::Path;

use crate::bench::checkpoint::{benchmark_checkpoint, tensor_bytes, Shape};
use crate::bench::checksum::Checksum;
use crate::bench::load_child::{run_contender, Measure};
use crate::bench::memcpy::warm_up;
use crate::bench::memory::measured;
use crate::bench::rounds::interleaved;
use crate::bench::stats::load_average;
use crate::bench::table::Table;
use crate::bench::Error;
use crate::{Args, B};
use burn_patcher::{Checkpoint, LoadOptions};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;

/// The loads measured: the child mode of the single-device load, and its label.
const LOADS: [(&str, &str); 2] = [
    ("patcher-seed", "seed patcher"),
    ("patcher-merged", "fused QKV + merged experts"),
];

/// The patch of a load's mode.
fn patch_of(key: &str) -> Patch {
    match key {
        "patcher-merged" => Patch::fused_qkv(),
        _ => Patch::seed(),
    }
}

/// A peer's child (`tpN-R-KEY`): one load of peer R of N, measured.
pub fn peer_child(
    mode: &str,
    config: &Qwen2MoeConfig,
    dir: &Path,
    options: LoadOptions,
) -> Result<Measure, Error> {
    let parsed = mode.strip_prefix("tp").and_then(|rest| {
        let (world, rest) = rest.split_once('-')?;
        let (rank, key) = rest.split_once('-')?;
        Some((
            world.parse::<usize>().ok()?,
            rank.parse::<usize>().ok()?,
            key,
        ))
    });
    let Some((world, rank, key)) = parsed else {
        return Err(format!("unknown mode `{mode}`").into());
    };
    // The patcher of the whole config: its conversions are the checkpoint's.
    let patcher = patch_of(key).patcher::<B, _>(config)?;
    let (peer, plan) = config.tensor_parallel(rank, world)?;
    let device = Default::default();
    let (loaded, usage) = measured(|| {
        let pretrained = Pretrained::from_path(dir)
            .patcher(&patcher)
            .options(options.tensor_parallel(plan));
        Ok(pretrained.build(&device, |ctx| Qwen2MoeForCausalLm::build(&peer, ctx))?)
    })?;
    if !loaded.report.missing.is_empty() || !loaded.report.unexpected.is_empty() {
        return Err(format!("the load was not clean:\n{}", loaded.report).into());
    }
    let bytes_read = loaded.bytes_read;
    let loaded = Checksum::of::<B, _>(&loaded.model);
    Ok(Measure { usage, loaded, bytes_read })
}

/// The parent: checkpoint, warm-up, the loads in interleaved rounds, the table.
pub fn parent(args: &Args, world: usize) -> Result<(), Error> {
    let shape = Shape::for_size(args.size_mb);
    benchmark_checkpoint(args.dir_given.then_some(args.dir.as_path()), &shape)?;
    let checkpoint = Checkpoint::open(&args.dir)?;
    let bytes = tensor_bytes(&checkpoint) as f64;
    // Every file (a `--dir` checkpoint may be sharded), warm in the page cache.
    for file in checkpoint.files() {
        warm_up(file)?;
    }
    drop(checkpoint);
    let load_before = load_average();
    let described = match args.dir_given {
        true => args.dir.display().to_string(),
        false => shape.describe(),
    };
    println!("checkpoint: {described} ({:.1} MB of tensors)", bytes / 1e6);
    println!(
        "{world} peers, each in its own process; loader threads {}; {} rounds, medians",
        args.threads, args.repeats
    );
    let mut loads: Vec<(String, String)> = Vec::new();
    for (key, label) in LOADS {
        loads.push((key.to_string(), format!("{label}, one device")));
        for rank in 0..world {
            loads.push((
                format!("tp{world}-{rank}-{key}"),
                format!("  peer {rank} of {world}"),
            ));
        }
    }
    let outcomes = interleaved(
        loads.len(),
        args.repeats,
        |i| eprint!(" {}", loads[i].0),
        |i| Ok(run_contender(&loads[i].0, &args.dir, args.threads)?.0),
    );
    eprintln!();
    let mut table = Table::new([
        ("load", 36),
        ("time s", 8),
        ("x one", 6),
        ("read MB", 9),
        ("x one", 6),
        ("peak RSS+ MB", 13),
        ("x one", 6),
        ("model MB", 9),
        ("RSS+ x model", 12),
    ]);
    let mut whole: Option<(f64, f64, f64)> = None;
    for ((key, label), outcome) in loads.iter().zip(&outcomes) {
        let figures = (
            outcome.median(|m| m.usage.seconds),
            outcome.median(|m| m.bytes_read as f64),
            outcome.median(|m| m.usage.rss_added as f64),
            outcome.median(|m| m.loaded.bytes as f64),
        );
        let (Some(s), Some(read), Some(added), Some(model)) = figures else {
            table.note(label.as_str(), outcome.why());
            continue;
        };
        if !key.starts_with("tp") {
            whole = Some((s, read, added));
        }
        let (s1, read1, added1) = whole.unwrap_or((s, read, added));
        table.row(vec![
            label.clone(),
            format!("{s:.3}"),
            format!("{:.2}", s / s1),
            format!("{:.1}", read / 1e6),
            format!("{:.2}", read / read1),
            format!("{:.1}", added / 1e6),
            format!("{:.2}", added / added1),
            format!("{:.1}", model / 1e6),
            format!("{:.2}", added / model),
        ]);
    }
    print!("\n{}", table.aligned());
    println!(
        "(x one: against the single-device load above it; model MB: the parameters the load \
         holds; 1-minute load average before the run {load_before:.2})"
    );
    Ok(())
}
