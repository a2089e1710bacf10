//! `burn-patcher convert CKPT OUT --model FAMILY --patch NAME... [--to patched|original]`:
//! rewrites a checkpoint in the patched model's own layout (a later load with the same patches
//! converts nothing), or a patched-layout checkpoint back in the family's stock layout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use patcher_burn::{
    load_with, model_params_with, save_model, LoadOptions, LoadSpec, PretrainedModel, SaveOptions,
};
use patcher_core::plan::PlanOptions;
use patcher_core::{Checkpoint, ConversionPlan, DType, TensorMeta, WeightTransform};
use tempfile::TempDir;

use crate::abandoned::{remove_abandoned_stagings, staging_prefix};
use crate::error::CliError;
use crate::family::{Family, FamilyCommand, B};
use crate::out;
use crate::plan::{does_not_fit, patch_flags};
use crate::prepare::{checkpoint_folder, parent_folder, Prepared, Selection};

/// Files listed after a conversion (a sharded output lists its first shards).
const MAX_FILES_LISTED: usize = 12;

/// The layout `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Target {
    /// The patched model's own parameters, under transformers' names and in PyTorch layout:
    /// loading it with the same patches converts no tensor.
    Patched,
    /// The family's stock transformers layout (the layout its default conversions and the
    /// patches' conversions start from).
    Original,
}

/// The `convert` options besides `--model` and `--patch`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConvertOptions {
    /// The checkpoint.
    #[arg(value_name = "CKPT")]
    pub(crate) checkpoint: PathBuf,
    /// The folder to write.
    #[arg(value_name = "OUT")]
    pub(crate) out: PathBuf,
    /// The layout to write.
    #[arg(long, value_enum, default_value_t = Target::Patched)]
    pub(crate) to: Target,
    /// Shards of at most this much tensor data, with a model.safetensors.index.json:
    /// bytes, or with a unit (500MB, 5GB, 2GiB). Default: one file.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) max_shard_size: Option<u64>,
    /// The dtype of the float tensors written. Default: the checkpoint's, when its float
    /// tensors share one (the values pass through f32, exactly for f16 and bf16), else f32.
    #[arg(long, value_enum)]
    pub(crate) dtype: Option<OutputDType>,
    /// Let --dtype write values beyond its range as infinities and values below its smallest
    /// subnormal as zeros. Without it such a value fails the conversion (exit status 3, naming
    /// the tensor and the value) and nothing is written; rounding is always allowed.
    #[arg(long)]
    pub(crate) allow_lossy: bool,
}

/// The `convert` arguments.
pub(crate) struct ConvertArgs {
    pub(crate) options: ConvertOptions,
    pub(crate) model: Selection,
}

/// The `--dtype` values: the float dtype written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputDType {
    /// float32.
    F32,
    /// float16.
    F16,
    /// bfloat16.
    Bf16,
}

impl OutputDType {
    pub(crate) fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// `1234`, `500MB`, `5GB`, `2GiB` (decimal and binary units, as transformers' `max_shard_size`).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
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

/// The float dtype of the checkpoint's float tensors when they all have one (a BF16
/// checkpoint is written back in BF16), else F32 (mixed, F64, or none).
fn checkpoint_float_dtype(checkpoint: &Checkpoint) -> DType {
    let mut floats = checkpoint
        .metas()
        .into_iter()
        .map(|(_, meta)| meta.dtype)
        .filter(|dtype| dtype.is_float());
    match floats.next() {
        Some(first) if first != DType::F64 && floats.all(|d| d == first) => first,
        _ => DType::F32,
    }
}

impl FamilyCommand for ConvertArgs {
    type Output = Result<String, CliError>;

    fn run<F: Family>(self) -> Self::Output {
        let ConvertArgs { options: args, model } = self;
        let staging = Staging::new(&args.out)?;
        let family = model.family;
        let prepared = Prepared::<F>::new(&args.checkpoint, &model)?;
        let plan = prepared.plan()?;
        if !plan.would_load {
            print!("{}", plan.report);
            return Err(does_not_fit(&prepared, family, &plan));
        }
        let loaded = load_with(
            &prepared.model,
            &prepared.checkpoint,
            &prepared.spec,
            &LoadOptions::default().progress_bar(),
        )
        .map_err(CliError::load)?;
        let conversions = match args.to {
            // The model's own parameters under transformers' names (BERT's `self_` is written
            // `self`).
            Target::Patched => <F as PretrainedModel<B>>::field_renamings(),
            Target::Original => stock_conversions(&loaded.model, &prepared.spec)?,
        };
        let dtype = args
            .dtype
            .map(OutputDType::dtype)
            .unwrap_or_else(|| checkpoint_float_dtype(&prepared.checkpoint));
        let mut options = SaveOptions::default()
            .torch_layouts(loaded.layouts.clone())
            .float_dtype(dtype);
        if let Some(bytes) = args.max_shard_size {
            options = options.max_shard_size(bytes);
        }
        if args.allow_lossy {
            options = options.allow_lossy_narrowing();
        }
        let spinner = spinner(format!("writing {}", args.out.display()));
        let written = save_model(&loaded.model, staging.path(), &conversions, None, &options)
            .map_err(|error| {
                let needed = out::bytes_to_write(&loaded.model, &loaded.layouts, dtype);
                out::write_failed(&args.out, needed, error)
            });
        spinner.finish_and_clear();
        let written = written?;
        let copied = copy_side_files(
            &checkpoint_folder(&args.checkpoint),
            Some(&prepared.config_path),
            staging.path(),
        )?;
        // What was written, counted from the file itself (a stock layout may hold more tensors
        // than the model has parameters: per-expert linears).
        let tensors = Checkpoint::open(staging.path())?.len();
        staging.commit()?;

        let mut out = String::new();
        let layout = match args.to {
            Target::Patched => format!(
                "the layout of --model {} with {} (loading it with them converts no tensor)",
                family.name(),
                patch_flags(prepared.patch)
            ),
            Target::Original => format!(
                "the stock {} layout ({} conversions reversed)",
                family.name(),
                conversions.len()
            ),
        };
        let _ = writeln!(
            out,
            "wrote {} in {layout}: {tensors} tensors ({} parameters loaded), float tensors in {}",
            args.out.display(),
            loaded.report.loaded,
            dtype.as_str()
        );
        if !loaded.report.ignored.is_empty() {
            // Buffers such as BERT's `position_ids`: not parameters, and transformers' own
            // save leaves them out too.
            let _ = writeln!(
                out,
                "not written: {} (checkpoint keys the model declares are not parameters)",
                loaded.report.ignored.join(", ")
            );
        }
        list_files(&mut out, written.iter().chain(&copied));
        Ok(out)
    }
}

/// Lists the files written, by name (a sharded output lists its first shards).
pub(crate) fn list_files<'a>(out: &mut String, files: impl Iterator<Item = &'a PathBuf>) {
    let files: Vec<&PathBuf> = files.collect();
    for file in files.iter().take(MAX_FILES_LISTED) {
        let name = file.file_name().unwrap_or(file.as_os_str());
        let _ = writeln!(out, "  {}", name.to_string_lossy());
    }
    if files.len() > MAX_FILES_LISTED {
        let _ = writeln!(out, "  and {} more", files.len() - MAX_FILES_LISTED);
    }
}

/// The conversions that a checkpoint in the family's stock layout takes to load into `model`
/// (built with the patches), pinned to `model`'s shapes: the spec's conversions (without the
/// legacy renamings, which are not the stock layout) run backwards
/// on the model's parameter list give the stock keys and shapes, and the load plan of those is
/// what a save in the stock layout reverses. Metadata only.
fn stock_conversions<M: burn::module::Module<crate::family::B>>(
    model: &M,
    spec: &LoadSpec,
) -> Result<Vec<WeightTransform>, CliError> {
    let params: Vec<(String, TensorMeta)> = model_params_with(model, &spec.layouts)
        .iter()
        .map(|p| p.expected(DType::F32))
        .collect();
    let options = PlanOptions::default();
    let save = ConversionPlan::for_save(spec.stock_transforms(), &params, &options)
        .map_err(|e| CliError::Save(e.into()))?;
    let stock: Vec<(String, TensorMeta)> = save
        .groups()
        .iter()
        .flat_map(|g| g.targets.iter().map(|t| (t.key.clone(), t.meta.clone())))
        .collect();
    let load = ConversionPlan::new(spec.stock_transforms(), &stock, &params, &options);
    if !load.is_clean() {
        return Err(CliError::Save(patcher_burn::SaveError::Mismatch {
            message: format!(
                "the stock layout does not load back into the model:\n{}",
                load.report()
            ),
            conversion: None,
            keys: Vec::new(),
        }));
    }
    Ok(load.used_conversions().to_vec())
}

/// A spinner on stderr (drawn only on a terminal).
fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The files of a checkpoint folder that are not weights (`config.json`,
/// `generation_config.json`, tokenizer files), copied next to the converted weights so that
/// OUT is a complete checkpoint folder, with `config` (the config the conversion used, if any)
/// as its `config.json`. Returns the copies.
pub(crate) fn copy_side_files(
    from: &Path,
    config: Option<&Path>,
    to: &Path,
) -> Result<Vec<PathBuf>, CliError> {
    const WEIGHTS: [&str; 8] = [
        ".safetensors",
        ".safetensors.index.json",
        ".bin",
        ".bin.index.json",
        ".pt",
        ".pth",
        ".ckpt",
        ".gguf",
    ];
    let io = CliError::io;
    let mut copied = Vec::new();
    let entries = std::fs::read_dir(from).map_err(io("reading the folder", from))?;
    let mut names: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("reading the folder", from))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !name.starts_with('.') && !WEIGHTS.iter().any(|w| name.ends_with(w)) {
            names.push(entry.path());
        }
    }
    names.sort();
    let copies = names.iter().filter_map(|source| {
        let name = source.file_name()?;
        (name != "config.json").then(|| (source.as_path(), to.join(name)))
    });
    let config_copy = config.map(|config| (config, to.join("config.json")));
    for (source, target) in config_copy.into_iter().chain(copies) {
        std::fs::copy(source, &target).map_err(io("copying", source))?;
        copied.push(target);
    }
    Ok(copied)
}

/// OUT being written: a hidden folder next to it, renamed to OUT once everything is written, and
/// removed with what it holds if anything fails first.
pub(crate) struct Staging {
    dir: TempDir,
    out: PathBuf,
}

impl Staging {
    /// Checks that OUT is absent or an empty folder (through a symbolic link: see
    /// [`out::resolve`]), and makes the staging folder next to that folder (creating its parent
    /// folders).
    pub(crate) fn new(out: &Path) -> Result<Self, CliError> {
        let out = &out::resolve(out)?;
        let parent = parent_folder(out);
        std::fs::create_dir_all(&parent).map_err(CliError::io("creating", &parent))?;
        remove_abandoned_stagings(&parent);
        let dir = tempfile::Builder::new()
            .prefix(&staging_prefix())
            .tempdir_in(&parent)
            .map_err(CliError::io("creating a temporary folder in", &parent))?;
        Ok(Self { dir, out: out.to_path_buf() })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Moves the staging folder to OUT.
    pub(crate) fn commit(self) -> Result<(), CliError> {
        let io = CliError::io;
        if self.out.is_dir() {
            // Checked empty before: remove_dir fails if something appeared since.
            std::fs::remove_dir(&self.out).map_err(io("replacing the empty folder", &self.out))?;
        }
        std::fs::rename(self.dir.path(), &self.out)
            .map_err(io("moving the output to", &self.out))?;
        // Renamed: nothing left to clean up.
        let _ = self.dir.keep();
        Ok(())
    }
}
