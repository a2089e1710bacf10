//! `burn-patcher`: inspect a safetensors checkpoint, plan a patched load (dry run, no tensor
//! read), and convert a checkpoint to a patched model's layout and back.

mod convert;
mod error;
mod family;
mod inspect;
mod plan;
mod prepare;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::convert::{ConvertArgs, OutputDType, Target};
use crate::error::{CliError, EXIT_CODES};
use crate::family::{check_patches, FamilyName, PatchName};
use crate::plan::PlanArgs;

/// Inspect, plan and convert safetensors checkpoints for patched Burn models.
///
/// CKPT is a .safetensors file, a sharded *.safetensors.index.json, or a folder holding either;
/// plan and convert read config.json from CKPT's folder.
#[derive(Debug, Parser)]
#[command(name = "burn-patcher", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// would succeed, 1 (with the report) when it would not.
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
    /// it is written; OUT is written whole or not at all (it must not exist, or be empty), and
    /// gets CKPT's config.json and other non-weight files.
    #[command(after_help = EXIT_CODES)]
    Convert {
        /// The checkpoint.
        #[arg(value_name = "CKPT")]
        checkpoint: PathBuf,
        /// The folder to write.
        #[arg(value_name = "OUT")]
        out: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        /// The layout to write.
        #[arg(long, value_enum, default_value_t = Target::Patched)]
        to: Target,
        /// Shards of at most this much tensor data, with a model.safetensors.index.json:
        /// bytes, or with a unit (500MB, 5GB, 2GiB). Default: one file.
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        max_shard_size: Option<u64>,
        /// The dtype of the float tensors written. Default: the checkpoint's, when its float
        /// tensors share one (the values pass through f32, exactly for f16 and bf16), else f32.
        #[arg(long, value_enum)]
        dtype: Option<OutputDType>,
    },
}

/// `--model` and `--patch`.
#[derive(Debug, clap::Args)]
struct ModelArgs {
    /// The model family.
    #[arg(long = "model", value_name = "FAMILY", value_enum)]
    family: FamilyName,
    /// Patches to apply (repeat the flag, or separate with commas). fused-qkv: q/k/v as one
    /// qkv_proj (llama, qwen2-moe); sequential-experts: experts as a list of linears (qwen2-moe).
    #[arg(long = "patch", value_name = "NAME", value_enum, value_delimiter = ',')]
    patches: Vec<PatchName>,
}

impl ModelArgs {
    /// The family and its checked, deduplicated patches.
    fn checked(self) -> Result<(FamilyName, Vec<PatchName>), CliError> {
        let patches = check_patches(self.family, &self.patches).map_err(CliError::Usage)?;
        Ok((self.family, patches))
    }
}

/// `1234`, `500MB`, `5GB`, `2GiB` (decimal and binary units, as transformers' `max_shard_size`).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a size: give bytes, or a number with a unit (500MB, 5GB, 2GiB)")
    })?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}`: use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    match number.checked_mul(scale) {
        Some(0) => Err("the shard size must be at least one byte".to_string()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{text}` is too large")),
    }
}

fn run(cli: Cli) -> Result<String, CliError> {
    match cli.command {
        Command::Inspect { checkpoint } => inspect::inspect(&checkpoint),
        Command::Plan { checkpoint, model } => {
            let (family, patches) = model.checked()?;
            family.dispatch(PlanArgs {
                checkpoint,
                family,
                patches,
            })
        }
        Command::Convert {
            checkpoint,
            out,
            model,
            to,
            max_shard_size,
            dtype,
        } => {
            let (family, patches) = model.checked()?;
            family.dispatch(ConvertArgs {
                checkpoint,
                out,
                family,
                patches,
                to,
                max_shard_size,
                dtype,
            })
        }
    }
}

fn main() -> ExitCode {
    // clap prints usage errors and exits with status 2 itself.
    let cli = Cli::parse();
    match run(cli) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
