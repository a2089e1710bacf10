//! What `plan` and `convert` share: the config, the checkpoint, the patched model and the load
//! spec, made exactly as the kit's `LoadFamily::load` makes them (config read and checked
//! against the checkpoint's header, model built with the patcher, `LoadSpec::for_model`).

use std::path::{Path, PathBuf};

use patcher_burn::{plan_with, BuildContext, LoadOptions, LoadPlan, LoadSpec};
use patcher_core::Checkpoint;
use patcher_models::auto::{read_model_type, FamilyConfig};
use patcher_models::common::limits::{check_fits, SizedConfig};
use patcher_models::replacements::{Patch, PatchTarget};

use crate::error::CliError;
use crate::family::{Family, FamilyName, B};

/// The folder of a checkpoint path: the path itself for a folder, else the file's folder.
pub(crate) fn checkpoint_folder(path: &Path) -> PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    parent_folder(path)
}

/// The folder `path` is in (`.` for a bare name).
pub(crate) fn parent_folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What `--model`, `--patch` and `--config` select.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    /// The family.
    pub(crate) family: FamilyName,
    /// The patches, all of the family's.
    pub(crate) patch: Patch,
    /// `--config`, else `config.json` in the checkpoint's folder.
    pub(crate) config: Option<PathBuf>,
}

impl Selection {
    /// The `config.json` to read for the checkpoint at `path`.
    pub(crate) fn config_path(&self, path: &Path) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| checkpoint_folder(path).join("config.json"))
    }
}

/// A checkpoint opened for family `F` with some patches, and the model a load would fill.
pub(crate) struct Prepared<F: Family> {
    /// `config.json`.
    pub(crate) config_path: PathBuf,
    /// The parsed config.
    pub(crate) config: F::Config,
    /// The opened checkpoint (headers only).
    pub(crate) checkpoint: Checkpoint,
    /// The patches.
    pub(crate) patch: Patch,
    /// The model built with the patches' patcher (parameters lazy: nothing read or allocated).
    pub(crate) model: F,
    /// The load spec of `LoadFamily::load` with that patcher.
    pub(crate) spec: LoadSpec,
}

impl<F: Family> Prepared<F> {
    /// Reads the config (`config.json` next to `path` unless `--config` says otherwise), opens
    /// the checkpoint, checks that the config fits it, and builds the model with the patches.
    pub(crate) fn new(path: &Path, selection: &Selection) -> Result<Self, CliError> {
        let config_path = selection.config_path(path);
        check_model_type(&config_path, selection.family)?;
        let config = F::Config::from_file(&config_path)
            .map_err(|e| CliError::config(config_path.clone(), e))?;
        let checkpoint = Checkpoint::open(path)?;
        config
            .model_size()
            .and_then(|size| check_fits(&size, &checkpoint))
            .map_err(|e| CliError::config(config_path.clone(), e))?;
        let patch = selection.patch;
        let (model, spec) = build::<F>(&config, patch)?;
        Ok(Self { config_path, config, checkpoint, patch, model, spec })
    }

    /// The dry run of a strict load.
    pub(crate) fn plan(&self) -> Result<LoadPlan, CliError> {
        plan_with(
            &self.model,
            &self.checkpoint,
            &self.spec,
            &LoadOptions::default(),
        )
        .map_err(CliError::load)
    }

    /// The sets of the family's patches, other than this one, with which a strict load of the
    /// checkpoint would succeed (for a hint when it would not).
    pub(crate) fn patches_that_fit(&self) -> Vec<Patch> {
        <F::Config as PatchTarget>::PATCHES
            .subsets()
            .filter(|patch| *patch != self.patch)
            .filter(|patch| {
                build::<F>(&self.config, *patch)
                    .and_then(|(model, spec)| {
                        plan_with(&model, &self.checkpoint, &spec, &LoadOptions::default())
                            .map_err(CliError::load)
                    })
                    .is_ok_and(|plan| plan.would_load)
            })
            .collect()
    }
}

/// The model built with the patcher of `patch`, and its load spec.
fn build<F: Family>(config: &F::Config, patch: Patch) -> Result<(F, LoadSpec), CliError> {
    let patcher = patch
        .patcher::<B, _>(config)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let model = BuildContext::build(&patcher, &Default::default(), |ctx| F::build(config, ctx))?;
    Ok((model, LoadSpec::for_model::<B, F>(&patcher)))
}

/// The family whose `model_type` the config at `path` names (what `--model` defaults to).
pub(crate) fn family_of_config(path: &Path) -> Result<FamilyName, CliError> {
    let Some(model_type) = read_model_type(path).ok() else {
        return Err(CliError::Usage(format!(
            "{} names no model_type (or cannot be read): give the family with --model ({}), or, \
             for a model without a family, its conversions with --conversions FILE",
            path.display(),
            crate::family::family_names().join(", ")
        )));
    };
    FamilyName::of_model_type(&model_type).ok_or_else(|| {
        CliError::Usage(format!(
            "{} has model_type `{model_type}`, which burn-patcher has no family for (its \
             families: {}); convert such a model with --conversions FILE",
            path.display(),
            crate::family::family_names().join(", ")
        ))
    })
}

/// Fails with the right `--model` when `config.json` names another family's `model_type`.
/// Anything unreadable is left to the family's config reader, which says what is wrong.
fn check_model_type(path: &Path, family: FamilyName) -> Result<(), CliError> {
    let Some(model_type) = read_model_type(path).ok() else {
        return Ok(());
    };
    let model_type = model_type.as_str();
    if model_type == family.model_type() {
        return Ok(());
    }
    let hint = match FamilyName::of_model_type(model_type) {
        Some(right) => format!("use --model {}", right.name()),
        None => format!(
            "burn-patcher has no family for `{model_type}` (its families: {})",
            crate::family::family_names().join(", ")
        ),
    };
    Err(CliError::WrongFamily {
        path: path.to_path_buf(),
        model_type: model_type.to_string(),
        expected: family.model_type(),
        family: family.name(),
        hint,
    })
}
