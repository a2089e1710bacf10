//! What the benchmarks share (`load_benchmark`, `forward_benchmark`): the generated checkpoint,
//! statistics, and the error type. Each benchmark includes this folder with
//! `#[path = "../bench/mod.rs"] mod bench;`.

#![allow(dead_code)] // each benchmark uses a part

pub mod checkpoint;
pub mod cli;
pub mod stats;

/// Any error of a benchmark, printed as it is.
pub type Error = Box<dyn std::error::Error>;
