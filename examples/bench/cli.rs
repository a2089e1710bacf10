//! The benchmarks' command lines: flags with values, the checkpoint folder's default.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::Error;

/// Where the generated checkpoint lives unless `--dir` says otherwise.
pub fn default_checkpoint_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-checkpoint")
}

/// The program's arguments, flag by flag.
pub struct Cli(std::iter::Skip<std::env::Args>);

impl Cli {
    /// The arguments after the program name.
    pub fn new() -> Self {
        Self(std::env::args().skip(1))
    }

    /// The next flag, if any.
    pub fn flag(&mut self) -> Option<String> {
        self.0.next()
    }

    /// The value after `flag`.
    pub fn value(&mut self, flag: &str) -> Result<String, Error> {
        self.0
            .next()
            .ok_or_else(|| format!("{flag} needs a value").into())
    }

    /// The value after `flag`, parsed.
    pub fn parsed<T: FromStr>(&mut self, flag: &str) -> Result<T, Error>
    where
        T::Err: std::error::Error + 'static,
    {
        Ok(self.value(flag)?.parse()?)
    }

    /// The value after `flag`, a count of at least 1.
    pub fn count(&mut self, flag: &str) -> Result<usize, Error> {
        Ok(self.parsed::<usize>(flag)?.max(1))
    }
}

/// The error for an argument no benchmark knows.
pub fn unknown(flag: &str) -> Error {
    format!("unknown argument `{flag}` (try --help)").into()
}
