//! The load benchmark's children: each re-runs the benchmark in one `--mode` (or runs transformers'
//! script) and reports one load's time, memory and checksum on its `RESULT` line.

use std::path::Path;

use super::checksum::Checksum;
use super::child::{self, Fields, Ran};
use super::memory::Usage;
use super::rounds::Outcome;

/// One child's figures: what its `RESULT` line carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measure {
    /// Time and memory of the load call.
    pub usage: Usage,
    /// What the load holds.
    pub loaded: Checksum,
    /// Checkpoint bytes the load read (0 where not measured).
    pub bytes_read: u64,
}

impl Measure {
    /// The child's `RESULT` line.
    pub fn line(&self) -> String {
        let (u, c) = (&self.usage, &self.loaded);
        format!(
            "RESULT seconds={:.6} rss_added={} rss_kept={} checksum={:.17e} count={} \
             model_bytes={} bytes_read={}",
            u.seconds, u.rss_added, u.rss_kept, c.sum, c.count, c.bytes, self.bytes_read
        )
    }

    /// The figures of a `RESULT` line.
    pub fn parse(fields: &Fields) -> Option<Self> {
        let usage = Usage {
            seconds: fields.get("seconds")?,
            rss_added: fields.get("rss_added")?,
            rss_kept: fields.get("rss_kept")?,
        };
        let loaded = Checksum {
            sum: fields.get("checksum")?,
            count: fields.get("count")?,
            bytes: fields.get("model_bytes").unwrap_or(0),
        };
        let bytes_read = fields.get("bytes_read").unwrap_or(0);
        Some(Self { usage, loaded, bytes_read })
    }
}

/// Runs one round of the contender `key` in a child process; also returns the child's first
/// line of output when it is not the result (transformers' versions).
pub fn run_contender(
    key: &str,
    dir: &Path,
    threads: usize,
) -> Result<(Measure, Option<String>), Outcome<Measure>> {
    let transformers = key == "transformers";
    let command = if transformers {
        let mut command = child::python("bench_transformers.py");
        command.arg(dir);
        command
    } else {
        let mut command = child::this_program(key).map_err(|e| Outcome::Failed(e.to_string()))?;
        command
            .arg("--dir")
            .arg(dir)
            .args(["--threads", &threads.to_string()]);
        command
    };
    match child::run(command, transformers) {
        Ran::Done(stdout) => {
            let results = child::results(&stdout);
            let measure = results.last().and_then(Measure::parse);
            let measure = measure.ok_or_else(|| Outcome::Failed("no RESULT line".into()))?;
            Ok((measure, child::info_line(&stdout)))
        }
        Ran::Skipped(why) => Err(Outcome::Skipped(why)),
        Ran::Failed(why) => Err(Outcome::Failed(why)),
    }
}
