//! What the benchmarks share (`load_benchmark`, `forward_benchmark`), one concern per file.
//! Each benchmark includes this folder with `#[path = "../bench/mod.rs"] mod bench;`.

#![allow(dead_code)] // each benchmark uses a part

/// Where a Qwen2-MoE forward spends its time, part by part.
pub mod breakdown;
/// The generated Qwen2-MoE checkpoint (shape, values, reuse).
pub mod checkpoint;
/// The sum and count of a loaded model's values.
pub mod checksum;
/// Child processes and their `RESULT` lines.
pub mod child;
/// Command-line flags.
pub mod cli;
/// The forward benchmark's inputs and native-copy models.
pub mod inputs;
/// One-line JSON summaries.
pub mod json;
/// One Linear forward per weight layout.
pub mod layouts;
/// The load benchmark's children and their `RESULT` lines.
pub mod load_child;
/// The page-cache warm-up and the memcpy lower bound.
pub mod memcpy;
/// Time and peak resident memory of a call.
pub mod memory;
/// Interleaved rounds and their medians.
pub mod rounds;
/// Medians, the machine's load average.
pub mod stats;
/// Aligned and Markdown tables.
pub mod table;
/// transformers' eager forward, timed by its Python script.
pub mod transformers;

/// Any error of a benchmark, printed as it is.
pub type Error = Box<dyn std::error::Error>;
