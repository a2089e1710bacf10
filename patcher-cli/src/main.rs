//! `burn-patcher`: inspect a safetensors checkpoint, plan a patched load (dry run, no tensor
//! read), convert a checkpoint to a patched model's layout and back, and generate text with a
//! patched causal LM.

mod abandoned;
mod conversions;
mod convert;
mod error;
mod family;
mod generate;
mod generic;
mod inspect;
mod out;
mod plan;
mod prepare;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use patcher_models::replacements::Patch;

use crate::convert::{ConvertArgs, ConvertOptions};
use crate::error::{CliError, EXIT_CODES};
use crate::family::{check_patches, FamilyName};
use crate::generate::GenerateArgs;
use crate::generic::Generic;
use crate::plan::PlanArgs;
use crate::prepare::{checkpoint_folder, family_of_config, Selection};

/// Inspect, plan and convert safetensors checkpoints for patched Burn models, and generate text
/// with them.
///
/// CKPT is a .safetensors file, a sharded *.safetensors.index.json, or a folder holding either;
/// plan and convert read config.json from CKPT's folder, or, for a model the kit does not have,
/// run the renamings and converters of --conversions FILE on the checkpoint alone.
#[derive(Debug, Parser)]
#[command(name = "burn-patcher", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The load's and the save's phases (plan, waves read and uploaded, verify, write, commit,
    /// with sizes and times) on stderr, at this level and above: error, warn, info, debug or
    /// trace (trace adds the kernels each forward chose). Default: the BURN_PATCHER_LOG
    /// environment variable, else nothing.
    #[arg(long, global = true, value_name = "LEVEL")]
    log: Option<tracing::Level>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shards, dtypes, bytes, and the keys with layer and expert ranges collapsed (headers only).
    #[command(after_help = EXIT_CODES)]
    Inspect {
        /// The checkpoint.
        #[arg(value_name = "CKPT")]
        checkpoint: PathBuf,
    },
    /// The dry run of a strict load into a family's model with some patches: the load report
    /// and the conversions it would use, reading no tensor. Exit status 0 only when the load
    /// would succeed, 1 (with the report) when it would not. With --conversions, the tensors
    /// the file's conversions would write, and whether they can run.
    #[command(after_help = EXIT_CODES)]
    Plan {
        /// The checkpoint.
        #[arg(value_name = "CKPT")]
        checkpoint: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Loads CKPT with the patches and writes it to the folder OUT: in the patched model's own
    /// layout (a later load with the same patches converts nothing), or, with --to original,
    /// back in the family's stock transformers layout. The file is verified to load back before
    /// it is written; OUT is written whole or not at all (it must not exist, or be empty; a
    /// symbolic link is followed, and the folder it names must be empty and gets the files), and
    /// gets CKPT's config.json and other non-weight files. With --conversions (no family), the
    /// file's conversions run on the checkpoint's tensors and OUT gets what they write.
    #[command(after_help = EXIT_CODES)]
    Convert {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        options: ConvertOptions,
    },
    /// Generates text from --prompt with a causal LM checkpoint (any family whose config.json
    /// model_type the kit has), its tokenizer.json and, with --chat, its chat template; the
    /// text streams to stdout as it is generated, then the prompt's and the decode's tokens/s
    /// go to stderr.
    #[command(after_help = EXIT_CODES)]
    Generate(GenerateArgs),
}

/// `--model` and `--patch`, or `--conversions`.
#[derive(Debug, clap::Args)]
struct ModelArgs {
    /// A JSON file of renamings and converters to run on the checkpoint alone, for a model the
    /// kit has no family for: {"conversions": [{"rename": {"from": REGEX, "to": TEXT}},
    /// {"convert": {"sources": [...], "targets": [...], "ops": [{"chunk": {"dim": 1}}]}}]}.
    /// Ops: concatenate, chunk, split, merge_modulelist, split_modulelist, transpose, reshape,
    /// interleave, permute_for_rope. Keys no conversion matches are kept as they are.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["family", "patches", "config"])]
    conversions: Option<PathBuf>,
    /// The model family. Default: the one config.json's model_type names.
    #[arg(long = "model", value_name = "FAMILY", value_enum)]
    family: Option<FamilyName>,
    /// Patches to apply (repeat the flag, or separate with commas). fused-qkv: q/k/v as one
    /// projection (llama, qwen2-moe, mixtral, bert); sequential-experts: the experts as a list
    /// of linears (qwen2-moe, mixtral); seed: both.
    #[arg(long = "patch", value_name = "NAME", value_delimiter = ',')]
    patches: Vec<Patch>,
    /// The model's config.json. Default: config.json in CKPT's folder.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ModelArgs {
    /// The selection for the checkpoint at `checkpoint`, with the family found (`--model`, else
    /// config.json's `model_type`) and the patches checked.
    fn checked(self, checkpoint: &Path) -> Result<Selection, CliError> {
        let config = self
            .config
            .clone()
            .unwrap_or_else(|| checkpoint_folder(checkpoint).join("config.json"));
        let family = match self.family {
            Some(family) => family,
            None => family_of_config(&config)?,
        };
        let patch = check_patches(family, &self.patches).map_err(CliError::Usage)?;
        Ok(Selection { family, patch, config: self.config })
    }
}

fn run(cli: Cli) -> Result<String, CliError> {
    match cli.command {
        Command::Inspect { checkpoint } => inspect::inspect(&checkpoint),
        Command::Plan { checkpoint, model: ModelArgs { conversions: Some(file), .. } } => {
            Generic::new(&checkpoint, &file)?.plan()
        }
        Command::Convert { options, model: ModelArgs { conversions: Some(file), .. } } => {
            Generic::new(&options.checkpoint, &file)?.convert(&options)
        }
        Command::Plan { checkpoint, model } => {
            let model = model.checked(&checkpoint)?;
            model.family.dispatch(PlanArgs { checkpoint, model })
        }
        Command::Convert { options, model } => {
            let model = model.checked(&options.checkpoint)?;
            model.family.dispatch(ConvertArgs { options, model })
        }
        Command::Generate(args) => args.run(),
    }
}

fn main() -> ExitCode {
    // clap prints usage errors and exits with status 2 itself.
    let cli = Cli::parse();
    let log = cli.log.or_else(|| {
        let level = std::env::var("BURN_PATCHER_LOG").ok()?;
        let parsed = level.parse().ok();
        if parsed.is_none() {
            eprintln!(
                "warning: BURN_PATCHER_LOG={level:?} is no level (error, warn, info, debug or \
                 trace): nothing is logged"
            );
        }
        parsed
    });
    if let Some(level) = log {
        // Plain text whatever the build: another crate in the graph (burn-collective's
        // transport) may turn on tracing-subscriber's `ansi` feature, and colours by default.
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    // A panic is a bug: say so, and exit with 3 rather than Rust's 101.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error, a bug of burn-patcher (please report it): {info}");
    }));
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
        Err(_) => ExitCode::from(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::parse_size;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("500 mb"), Ok(500_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("GB").is_err());
        assert!(parse_size("99999999999999999999GB").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
