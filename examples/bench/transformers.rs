//! transformers' side of the forward benchmark: `scripts/bench_transformers_forward.py` run in a
//! child process, its `RESULT` lines read back.

use std::path::Path;

use super::child;
use super::layouts::Prefill;
use super::Error;

/// transformers' eager forward: `(shape, median seconds)`, empty when Python lacks it.
pub fn forward_times(
    dir: &Path,
    threads: usize,
    rounds: usize,
    shapes: &[Prefill],
) -> Result<Vec<(Prefill, f64)>, Error> {
    let shapes: Vec<String> = shapes.iter().map(|(b, s)| format!("{b}x{s}")).collect();
    let mut command = child::python("bench_transformers_forward.py");
    command
        .arg(dir)
        .args(["--threads", &threads.to_string()])
        .args(["--rounds", &rounds.to_string()])
        .args(["--shapes", &shapes.join(",")]);
    let Some(stdout) = child::run_optional(command, "bench_transformers_forward.py")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for fields in child::results(&stdout) {
        let (Some(shape), Some(seconds)) = (fields.text("shape"), fields.get("seconds")) else {
            continue;
        };
        let (b, s) = shape.split_once('x').ok_or("bad RESULT line")?;
        out.push(((b.parse()?, s.parse()?), seconds));
    }
    Ok(out)
}
