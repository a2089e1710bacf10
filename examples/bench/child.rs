//! Child processes: this program re-executed in one `--mode`, or a Python script; what they
//! print on their `RESULT key=value ...` lines.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use super::Error;

/// The exit status of a Python script that cannot import torch or transformers.
pub const SKIPPED: i32 = 3;

/// How a child ended.
pub enum Ran {
    /// It succeeded: its standard output.
    Done(String),
    /// An optional child could not run (no Python, no transformers): why.
    Skipped(String),
    /// It failed: its exit status and last line.
    Failed(String),
}

/// This program again, with `--mode MODE` first.
pub fn this_program(mode: &str) -> Result<Command, Error> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["--mode", mode]);
    Ok(command)
}

/// `python3 scripts/SCRIPT`.
pub fn python(script: &str) -> Command {
    let mut command = Command::new("python3");
    command.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(script),
    );
    command
}

/// Runs `command` to its end, its standard error shown as it comes. An `optional` child (a
/// Python script) that cannot start or exits with [`SKIPPED`] is skipped, not failed.
pub fn run(mut command: Command, optional: bool) -> Ran {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) if optional => {
            let program = command.get_program().to_string_lossy().into_owned();
            return Ran::Skipped(format!("no {program} ({e})"));
        }
        Err(e) => return Ran::Failed(e.to_string()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if optional && output.status.code() == Some(SKIPPED) {
        let why = stdout.lines().next().unwrap_or("skipped");
        return Ran::Skipped(why.trim().to_string());
    }
    if !output.status.success() {
        let last = stdout.lines().last().unwrap_or("no output");
        return Ran::Failed(format!("{} ({last})", output.status));
    }
    Ran::Done(stdout)
}

/// Runs an optional contender (a Python script): its stdout, or `None` when it was skipped (the
/// reason printed after `what`); a failure is an error naming `what`.
pub fn run_optional(command: Command, what: &str) -> Result<Option<String>, Error> {
    match run(command, true) {
        Ran::Done(stdout) => Ok(Some(stdout)),
        Ran::Skipped(why) => {
            println!("{what}: {why}");
            Ok(None)
        }
        Ran::Failed(why) => Err(format!("{what}: {why}").into()),
    }
}

/// The fields of every `RESULT` line of `output`, in order.
pub fn results(output: &str) -> Vec<Fields> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(|rest| {
            Fields(
                rest.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// The first line of `output` when it is not a `RESULT` line (a child's versions line).
pub fn info_line(output: &str) -> Option<String> {
    let first = output.lines().next()?;
    (!first.starts_with("RESULT")).then(|| first.to_string())
}

/// One `RESULT` line's `key=value` fields.
pub struct Fields(HashMap<String, String>);

impl Fields {
    /// The field `key` as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The field `key`, parsed.
    pub fn get<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.text(key)?.parse().ok()
    }
}
