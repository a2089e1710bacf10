//! What a plan found: unexpected keys, missing parameters, shape mismatches, conversion errors and
//! unused conversions, rendered with collapsed layer indices and "did you mean" hints.

use std::fmt::{self, Write as _};

use crate::ops::OpError;
use crate::pattern::closest_name;
use crate::tensor::DType;

use super::collapse::{collapse_keys, collapse_names_with_first};

/// A parameter whose checkpoint-derived shape differs from the model's. It is not loaded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShapeMismatch {
    /// Full parameter name (PyTorch naming).
    pub name: String,
    /// Shape the checkpoint (after conversion) gives.
    pub checkpoint_shape: Vec<usize>,
    /// Shape the model expects.
    pub model_shape: Vec<usize>,
}

/// A key a converter produced that no parameter of the model takes (not loaded). The checkpoint
/// does not hold this key: the converter made it from [`sources`](Self::sources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConverterOutput {
    /// The produced key.
    pub key: String,
    /// The converter, as displayed.
    pub conversion: String,
    /// How many checkpoint tensors it was made from.
    pub sources: usize,
}

/// A tensor whose kind (float, int, bool) does not fit its parameter. It is not loaded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DTypeMismatch {
    /// Full parameter name (PyTorch naming).
    pub name: String,
    /// The dtype the checkpoint (after conversion) gives.
    pub checkpoint_dtype: DType,
    /// The dtype of the model's parameter.
    pub model_dtype: DType,
}

/// A group whose conversion cannot run; its targets are not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError {
    /// Full name of the (first) target of the group.
    pub target: String,
    /// The op that failed, if an op did.
    pub op: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl From<OpError> for ConversionError {
    fn from(e: OpError) -> Self {
        Self { target: e.target, op: Some(e.op), message: e.message }
    }
}

/// A transform of the list that did not take part in loading any parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusedTransform {
    /// Index in the transform list given to the plan.
    pub index: usize,
    /// The transform, as displayed.
    pub description: String,
}

/// The outcome of planning a load (or a save), before any byte is read.
///
/// Its [`Display`](fmt::Display) gives readable sections, with layer indices collapsed
/// (`model.layers.{0..23}.mlp.experts.gate_up_proj`) and near names suggested for missing keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Checkpoint keys (after renaming) the model has no parameter for, in natural order.
    pub unexpected: Vec<String>,
    /// Keys made by a converter that no parameter takes, in natural order.
    pub unexpected_outputs: Vec<ConverterOutput>,
    /// Checkpoint keys that match an ignore pattern (a model's keys to ignore on load, or
    /// [`PlanOptions::ignore_unexpected`](super::PlanOptions::ignore_unexpected)): present, not
    /// parameters, and not an error. In natural order.
    pub ignored: Vec<String>,
    /// Model parameters nothing loads into, in natural order.
    pub missing: Vec<String>,
    /// Parameters nothing loads into that match an ignore-missing pattern
    /// ([`PlanOptions::ignore_missing`](super::PlanOptions::ignore_missing)): they keep their
    /// initial values, and are not an error. In natural order.
    pub missing_ignored: Vec<String>,
    /// Parameters with a shape that differs from the model's, in natural order.
    pub mismatched: Vec<ShapeMismatch>,
    /// Tensors of a dtype their parameter cannot take (a float tensor for an int buffer).
    pub dtype_mismatches: Vec<DTypeMismatch>,
    /// Groups that cannot be converted (their targets are also missing).
    pub conversion_errors: Vec<ConversionError>,
    /// Transforms that loaded nothing (informational: a model's default conversions need not all
    /// apply to every checkpoint). `patcher_burn`'s loads leave out the model's legacy renamings
    /// (BERT's `gamma`/`beta`), which only old checkpoints match.
    pub unused_transforms: Vec<UnusedTransform>,
    /// Converters that ran backwards because the checkpoint is in their converted layout (a
    /// fused-experts checkpoint loaded into a model with one linear per expert), as displayed
    /// (forward form). Saving writes that layout back.
    pub reversed: Vec<String>,
    /// Patterns of a patcher's `filtered_weight_conversion_patterns` that removed no conversion
    /// (informational: probably a typo). Filled in by the loader.
    pub unused_filters: Vec<String>,
    /// Number of parameters that will be written.
    pub loaded: usize,
}

impl LoadReport {
    /// Whether every parameter loads and every checkpoint key is used: no unexpected, missing or
    /// mismatched key and no conversion error. Unused transforms do not count.
    pub fn is_clean(&self) -> bool {
        self.unexpected.is_empty()
            && self.unexpected_outputs.is_empty()
            && self.missing.is_empty()
            && self.mismatched.is_empty()
            && self.dtype_mismatches.is_empty()
            && self.conversion_errors.is_empty()
    }

    /// An unexpected key close to `missing`, if one is. `missing` is compared with the report's
    /// collapsed lines of unexpected keys; for a plain key the first key of the closest line is
    /// returned, so the suggestion is a key of [`unexpected`](Self::unexpected); for a collapsed
    /// line such as `model.layers.{0..3}.x` the closest collapsed line is, which stands only for
    /// keys of `unexpected`. Bounded: keys over 256 characters get no suggestion.
    pub fn suggestion_for(&self, missing: &str) -> Option<String> {
        let candidates = collapse_names_with_first(&self.unexpected);
        let single = !missing.contains('{');
        suggest(missing, single, &candidates).map(str::to_string)
    }
}

/// Checkpoint and model shapes of a mismatch.
type ShapePair = (Vec<usize>, Vec<usize>);

/// How similar (normalized Levenshtein) an unexpected key must be to be suggested.
const SIMILARITY: f64 = 0.8;

/// The collapsed line of unexpected keys closest to `missing`, which names only keys of the
/// report: the line itself for a collapsed `missing` line (`layers.{0,1}.x` for
/// `model.layers.{0,1}.x`), else the line's first key (one key for one key).
fn suggest<'a>(missing: &str, single: bool, lines: &'a [(String, &'a str)]) -> Option<&'a str> {
    let near = closest_name(missing, lines.iter().map(|(l, _)| l.as_str()), SIMILARITY)?;
    let (line, first) = lines.iter().find(|(l, _)| l == near)?;
    Some(if single { first } else { line.as_str() })
}

/// `target: op: message`.
impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.target)?;
        if let Some(op) = &self.op {
            write!(f, "{op}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} loaded, {} unexpected, {} missing, {} mismatched, {} conversion errors, {} unused \
             conversions",
            self.loaded,
            self.unexpected.len() + self.unexpected_outputs.len(),
            self.missing.len(),
            self.mismatched.len() + self.dtype_mismatches.len(),
            self.conversion_errors.len(),
            self.unused_transforms.len(),
        )?;
        // Named, not only counted: an ignore pattern that is too broad shows here.
        section(
            f,
            &count(
                self.ignored.len(),
                "checkpoint key ignored (declared as not a parameter)",
                "checkpoint keys ignored (declared as not parameters)",
            ),
            &collapse_names_with_first(&self.ignored),
            |f, (k, _)| write!(f, "{k}"),
        )?;
        section(
            f,
            &count(
                self.missing_ignored.len(),
                "parameter kept as initialized (declared as not in checkpoints)",
                "parameters kept as initialized (declared as not in checkpoints)",
            ),
            &collapse_names_with_first(&self.missing_ignored),
            |f, (k, _)| write!(f, "{k}"),
        )?;
        section(
            f,
            "Conversions run in reverse (the checkpoint is in their converted layout)",
            &self.reversed,
            |f, t| write!(f, "{t}"),
        )?;

        let unexpected = collapse_names_with_first(&self.unexpected);
        section(
            f,
            "Unexpected (in the checkpoint, not in the model)",
            &unexpected,
            |f, (k, _)| write!(f, "{k}"),
        )?;

        let outputs: Vec<(String, String)> = self
            .unexpected_outputs
            .iter()
            .map(|o| (o.key.clone(), o.conversion.clone()))
            .collect();
        section(
            f,
            "Produced by a conversion, not in the model (not loaded)",
            &collapse_keys(&outputs),
            |f, (k, conversion)| write!(f, "{k}  (made by {conversion})"),
        )?;

        let missing = collapse_names_with_first(&self.missing);
        let made: Vec<String> = self
            .unexpected_outputs
            .iter()
            .map(|o| o.key.clone())
            .collect();
        let made = collapse_names_with_first(&made);
        section(
            f,
            "Missing (left as initialized)",
            &missing,
            |f, (k, first)| {
                write!(f, "{k}")?;
                // A conversion's output first: a typo in a converter's target is the likely cause.
                if let Some(near) = suggest(k, k == first, &made) {
                    return write!(f, "  (did you mean `{near}`, made by a conversion?)");
                }
                match suggest(k, k == first, &unexpected) {
                    Some(near) => write!(f, "  (did you mean `{near}` from the checkpoint?)"),
                    None => Ok(()),
                }
            },
        )?;

        let items: Vec<(String, ShapePair)> = self
            .mismatched
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    (m.checkpoint_shape.clone(), m.model_shape.clone()),
                )
            })
            .collect();
        let mismatched = collapse_keys(&items);
        section(
            f,
            "Shape mismatch (not loaded)",
            &mismatched,
            |f, (k, (ckpt, model))| write!(f, "{k}: checkpoint {ckpt:?} vs model {model:?}"),
        )?;

        let dtypes: Vec<(String, (DType, DType))> = self
            .dtype_mismatches
            .iter()
            .map(|m| (m.name.clone(), (m.checkpoint_dtype, m.model_dtype)))
            .collect();
        section(
            f,
            "Dtype mismatch (not loaded)",
            &collapse_keys(&dtypes),
            |f, (k, (ckpt, model))| write!(f, "{k}: checkpoint {ckpt} vs model {model}"),
        )?;

        section(
            f,
            "Conversion errors (not loaded)",
            &self.conversion_errors,
            |f, e| write!(f, "{e}"),
        )?;

        section(f, "Unused conversions", &self.unused_transforms, |f, t| {
            write!(f, "#{} {}", t.index, t.description)
        })?;
        section(
            f,
            "Unused conversion filters (removed no conversion)",
            &self.unused_filters,
            |f, p| write!(f, "{p:?}"),
        )
    }
}

/// `1 key ...`, `2 keys ...`: `one` or `many` after the count.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn section<T>(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    items: &[T],
    line: impl FnMut(&mut String, &T) -> fmt::Result,
) -> fmt::Result {
    super::display::write_section(f, title, items, line)
}
