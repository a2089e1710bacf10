//! Every way the command line fails, with its exit status.

use std::path::PathBuf;

use patcher_burn::{BuildError, LoadError, SaveError};
use patcher_core::CheckpointError;
use patcher_models::common::GenerateError;
use patcher_models::tokenizer::TokenizerError;
use patcher_models::ConfigError;

/// The exit statuses, as `--help` prints them.
pub(crate) const EXIT_CODES: &str = "\
Exit status:
  0  success (plan: a strict load would succeed)
  1  the checkpoint does not fit the model and patches (plan: a strict load would fail; the
     report says why)
  2  usage or input error: unknown family or patch, unreadable or malformed checkpoint,
     config.json or tokenizer, an output folder that is not empty, a prompt too long
  3  converting or writing failed (nothing was left in the output folder), e.g. a value that
     --dtype cannot hold without --allow-lossy, or an internal error";

/// A failure of the command line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Arguments that do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// The checkpoint cannot be opened or read.
    #[error("{source}\nCKPT must be a .safetensors file, a *.safetensors.index.json, or a folder holding one of them")]
    Checkpoint {
        /// Why.
        #[source]
        source: CheckpointError,
    },
    /// `config.json` cannot be read or is not a valid config of the family.
    #[error(
        "{path}: {source}\nThe checkpoint's folder must hold the config.json of these weights"
    )]
    Config {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ConfigError,
    },
    /// `config.json` is of another family than `--model`.
    #[error("{path} has model_type `{model_type}`, not `{expected}` (--model {family}); {hint}")]
    WrongFamily {
        /// The config file.
        path: PathBuf,
        /// Its `model_type`.
        model_type: String,
        /// The family's `model_type`.
        expected: &'static str,
        /// `--model`.
        family: String,
        /// What to pass instead.
        hint: String,
    },
    /// The config describes a model that the checkpoint cannot fill.
    #[error("{path}: {source}")]
    ConfigMismatch {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ConfigError,
    },
    /// A strict load would fail: keys, shapes or conversions do not line up.
    #[error("{summary}\n{hint}")]
    DoesNotFit {
        /// The report's first line.
        summary: String,
        /// What to try.
        hint: String,
    },
    /// The output folder is in the way.
    #[error("{path}: {message}")]
    Output {
        /// OUT.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// Writing OUT failed (a full disk, a folder that is not writable); nothing was left in OUT.
    #[error(
        "cannot write the converted checkpoint to {out}: {source}\n{space}: if it is full, free \
         some space there or give an OUT on another file system (nothing was left in OUT)"
    )]
    Write {
        /// OUT.
        out: PathBuf,
        /// Why (boxed: the error stays small).
        #[source]
        source: Box<CheckpointError>,
        /// Where, how much is free and how much the checkpoint takes.
        space: String,
    },
    /// A conversion could not run on a tensor (`--conversions`: an op that does not fit it) or
    /// `--dtype` cannot hold a value without `--allow-lossy`; nothing was left in OUT.
    #[error("converting `{key}`: {message}")]
    Convert {
        /// The tensor (a group's first target).
        key: String,
        /// Why.
        message: String,
    },
    /// The model could not be built with the patcher (a bug of the family's patcher).
    #[error("building the model: {0}")]
    Build(#[from] BuildError),
    /// Loading or converting failed.
    #[error("{0}")]
    Load(#[source] LoadError),
    /// Saving the converted checkpoint was refused or failed before writing.
    #[error("{0}")]
    Save(#[source] SaveError),
    /// The checkpoint's tokenizer could not be read or used (`generate`).
    #[error("{0}")]
    Tokenizer(#[from] TokenizerError),
    /// Generation refused its input (`generate`: a prompt longer than the model's positions).
    #[error("{0}")]
    Generate(#[from] GenerateError),
    /// A file could not be written or copied.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit status (see [`EXIT_CODES`]).
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::WrongFamily { .. } | Self::ConfigMismatch { .. } | Self::DoesNotFit { .. } => 1,
            Self::Usage(_)
            | Self::Checkpoint { .. }
            | Self::Config { .. }
            | Self::Output { .. }
            | Self::Tokenizer(_)
            | Self::Generate(_) => 2,
            Self::Build(_)
            | Self::Convert { .. }
            | Self::Load(_)
            | Self::Save(_)
            | Self::Write { .. }
            | Self::Io { .. } => 3,
        }
    }

    /// A config error: a mismatch with the checkpoint is the checkpoint not fitting (1), the
    /// rest is input (2).
    pub(crate) fn config(path: PathBuf, source: ConfigError) -> Self {
        match source {
            ConfigError::CheckpointMismatch { .. } => Self::ConfigMismatch { path, source },
            source => Self::Config { path, source },
        }
    }

    /// Wraps an I/O error of `what` on `path`.
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { what, path, source }
    }

    /// A load error: the checkpoint's own faults are input errors, an incomplete plan is the
    /// checkpoint not fitting, the rest is a failed conversion.
    pub(crate) fn load(source: LoadError) -> Self {
        match source {
            LoadError::Checkpoint(source) => Self::Checkpoint { source },
            LoadError::Build(error) => Self::Build(error),
            other => Self::Load(other),
        }
    }
}

impl From<CheckpointError> for CliError {
    fn from(source: CheckpointError) -> Self {
        Self::Checkpoint { source }
    }
}
