//! `plan` and `convert` with `--conversions FILE` and no family: the transforms of the file run
//! on the checkpoint alone (no model is built), so any safetensors checkpoint, a user's GPT-2
//! say, can be planned and converted from the command line.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use patcher_core::plan::{collapse_keys, PlanOptions};
use patcher_core::{
    save_checkpoint, shard_by_size, Checkpoint, ConversionPlan, Groups, HostTensor, LossyNarrowing,
    TensorMeta, WeightTransform,
};

use crate::conversions;
use crate::convert::{copy_side_files, list_files, ConvertOptions, Staging, Target};
use crate::error::CliError;
use crate::out::write_error;
use crate::prepare::checkpoint_folder;

/// A checkpoint and a conversions file, planned together.
pub(crate) struct Generic {
    checkpoint: Checkpoint,
    file: PathBuf,
    transforms: Vec<WeightTransform>,
    plan: ConversionPlan,
}

impl Generic {
    /// Reads the conversions file and the checkpoint's header, and plans.
    pub(crate) fn new(checkpoint: &Path, file: &Path) -> Result<Self, CliError> {
        let transforms = conversions::read(file)?;
        let checkpoint = Checkpoint::open(checkpoint)?;
        let no_params: [(&str, TensorMeta); 0] = [];
        let options = PlanOptions::default().without_model();
        let plan = ConversionPlan::new(&transforms, &checkpoint.metas(), &no_params, &options);
        Ok(Self { checkpoint, file: file.to_path_buf(), transforms, plan })
    }

    /// `plan`: the plan's text when the conversion would succeed; the error (with the text
    /// printed first) when it would not.
    pub(crate) fn plan(self) -> Result<String, CliError> {
        let text = self.describe();
        match self.refusal() {
            None => Ok(text),
            Some(error) => {
                print!("{text}");
                Err(error)
            }
        }
    }

    /// The plan as text: each tensor written, where it comes from, and what does not work.
    fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan: {} ({} tensors) through {} ({} conversions), no model",
            self.checkpoint.path().display(),
            self.checkpoint.len(),
            self.file.display(),
            self.transforms.len()
        );
        let written: Vec<(String, (Vec<usize>, String))> = self
            .plan
            .groups()
            .iter()
            .flat_map(|group| {
                let source = group.sources.iter().flat_map(|(_, keys)| keys).next();
                let origin = match (group.transform, source) {
                    (Some(i), _) => self.transforms[i].to_string(),
                    (None, Some(key)) if *key != group.key => "renamed".to_string(),
                    (None, _) => "as it is".to_string(),
                };
                group
                    .targets
                    .iter()
                    .map(move |t| (t.key.clone(), (t.meta.shape.clone(), origin.clone())))
            })
            .collect();
        let _ = writeln!(out, "{} tensors written:", written.len());
        for (key, (shape, origin)) in collapse_keys(&written) {
            let _ = writeln!(out, "  {key} {shape:?} <- {origin}");
        }
        let report = self.plan.report();
        for error in &report.conversion_errors {
            let _ = writeln!(out, "error: {error}");
        }
        for unused in &report.unused_transforms {
            let _ = writeln!(out, "unused: {} matches no key", unused.description);
        }
        let verdict = match self.refusal() {
            None => "the conversion would succeed",
            Some(_) => "the conversion would FAIL",
        };
        let _ = writeln!(out, "Result: {verdict}");
        out
    }

    /// Why the conversion cannot run, if it cannot: conversion errors (an op that does not fit
    /// its tensors, two conversions writing one key).
    fn refusal(&self) -> Option<CliError> {
        let errors = &self.plan.report().conversion_errors;
        let first = errors.first()?;
        Some(CliError::DoesNotFit {
            summary: format!(
                "{} of {}'s conversions cannot run on the checkpoint: {first}",
                errors.len(),
                self.file.display()
            ),
            hint: "Fix the conversions file (see the plan above); keys no conversion matches \
                   are written as they are"
                .to_string(),
        })
    }

    /// `convert`: runs the conversions on every tensor and writes OUT (staged, then moved in
    /// place whole), with the checkpoint folder's other files.
    pub(crate) fn convert(self, args: &ConvertOptions) -> Result<String, CliError> {
        if args.to != Target::Patched {
            return Err(CliError::Usage(
                "--to original needs a family (--model); with --conversions the file's \
                 conversions run forward only: write the reverse ones in a second file"
                    .to_string(),
            ));
        }
        if let Some(error) = self.refusal() {
            print!("{}", self.describe());
            return Err(error);
        }
        let staging = Staging::new(&args.out)?;
        let narrowing = match args.allow_lossy {
            true => LossyNarrowing::Allow,
            false => LossyNarrowing::Refuse,
        };
        let mut tensors: Vec<(String, HostTensor<'static>)> = Vec::new();
        for group in self.plan.groups() {
            let mut inputs = Groups::new();
            for (pattern, keys) in group.sources.iter() {
                let read: Result<Vec<_>, _> = keys
                    .iter()
                    .map(|key| self.checkpoint.get(key)?.read())
                    .collect();
                inputs.push(pattern, read?);
            }
            let outputs = group.execute(inputs).map_err(|error| CliError::Convert {
                key: group.key.clone(),
                message: error.to_string(),
            })?;
            for (key, tensor) in outputs {
                let tensor = match args.dtype {
                    Some(dtype) if tensor.dtype.is_float() => {
                        tensor.cast_with(dtype.dtype(), narrowing).map_err(|e| {
                            CliError::Convert { key: key.clone(), message: e.to_string() }
                        })?
                    }
                    _ => tensor,
                };
                tensors.push((key, tensor.into_owned()));
            }
        }
        let count = tensors.len();
        let needed: u64 = tensors.iter().map(|(_, t)| t.num_bytes() as u64).sum();
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let shards = shard_by_size(tensors, args.max_shard_size);
        let written = save_checkpoint(
            staging.path().join("model.safetensors"),
            shards,
            Some(metadata),
        )
        .map_err(|source| write_error(&args.out, needed, source))?;
        let folder = checkpoint_folder(&args.checkpoint);
        let config = folder.join("config.json");
        let config = config.is_file().then_some(config.as_path());
        let copied = copy_side_files(&folder, config, staging.path())?;
        staging.commit()?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "wrote {} through {} ({} conversions): {count} tensors",
            args.out.display(),
            self.file.display(),
            self.transforms.len()
        );
        list_files(&mut out, written.iter().chain(&copied));
        Ok(out)
    }
}
