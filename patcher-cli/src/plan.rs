//! `burn-patcher plan CKPT --model FAMILY [--patch NAME...]`: the dry run of a strict load.

use std::fmt::Write as _;
use std::path::PathBuf;

use patcher_burn::LoadPlan;
use patcher_models::replacements::Patch;

use crate::error::CliError;
use crate::family::{Family, FamilyCommand, FamilyName};
use crate::prepare::{Prepared, Selection};

/// The `plan` arguments.
pub(crate) struct PlanArgs {
    pub(crate) checkpoint: PathBuf,
    pub(crate) model: Selection,
}

impl FamilyCommand for PlanArgs {
    type Output = Result<String, CliError>;

    /// The plan's text when a strict load would succeed; the error (with the text printed
    /// first) when it would not.
    fn run<F: Family>(self) -> Self::Output {
        let family = self.model.family;
        let prepared = Prepared::<F>::new(&self.checkpoint, &self.model)?;
        let plan = prepared.plan()?;
        let text = describe(&prepared, family, &plan);
        if plan.would_load {
            return Ok(text);
        }
        print!("{text}");
        Err(does_not_fit(&prepared, family, &plan))
    }
}

/// `--patch a --patch b`, or `no --patch`.
pub(crate) fn patch_flags(patch: Patch) -> String {
    if patch.is_empty() {
        return "no --patch".to_string();
    }
    patch
        .presets()
        .map(|(name, _)| format!("--patch {name}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The plan as text: what is loaded into what, the report, the conversions used.
fn describe<F: Family>(prepared: &Prepared<F>, family: FamilyName, plan: &LoadPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan: {} ({} tensors) into --model {} with {}",
        prepared.checkpoint.path().display(),
        prepared.checkpoint.len(),
        family.name(),
        patch_flags(prepared.patch),
    );
    let _ = writeln!(out, "config: {}", prepared.config_path.display());
    let _ = write!(out, "{}", plan.report);
    let used = plan.used_conversions();
    if used.is_empty() {
        let _ = writeln!(
            out,
            "No conversion used: the checkpoint is in this model's own layout."
        );
    } else {
        let _ = writeln!(out, "Conversions used ({}):", used.len());
        for conversion in used {
            let _ = writeln!(out, "  {conversion}");
        }
    }
    let verdict = if plan.would_load {
        "a strict load would succeed"
    } else {
        "a strict load would FAIL"
    };
    let _ = writeln!(out, "Result: {verdict}");
    out
}

/// The error of a plan that does not fit, with the patches that would fit if some would.
pub(crate) fn does_not_fit<F: Family>(
    prepared: &Prepared<F>,
    family: FamilyName,
    plan: &LoadPlan,
) -> CliError {
    let summary = format!(
        "the checkpoint does not fit --model {} with {}: {}",
        family.name(),
        patch_flags(prepared.patch),
        plan.report.to_string().lines().next().unwrap_or_default()
    );
    let fitting = prepared.patches_that_fit();
    let hint = if fitting.is_empty() {
        "No set of this family's patches fits it either: check --model, and that the checkpoint \
         and its config.json belong together (see the report)"
            .to_string()
    } else {
        let options: Vec<String> = fitting.into_iter().map(patch_flags).collect();
        format!("It would load with: {}", options.join(", or "))
    };
    CliError::DoesNotFit { summary, hint }
}
