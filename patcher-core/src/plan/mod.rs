//! The conversion plan: which checkpoint keys make which model parameters, through which ops,
//! with which shapes, decided from metadata alone (no byte is read).
//!
//! [`ConversionPlan::new`] follows transformers' loading algorithm (`convert_and_load_state_dict
//! _in_model`, phase 1) and [`ConversionPlan::for_save`] its `revert_weight_conversion`. The
//! loader executes a plan group by group with [`PlannedGroup::execute`].

mod collapse;
mod display;
mod experts;
mod group;
mod load;
mod module_pattern;
mod options;
mod pending;
mod report;
mod save;
mod shard;

#[cfg(test)]
mod tests;

pub use collapse::collapse_keys;
pub use display::{elide, MAX_LINE_BYTES, MAX_SECTION_LINES};
pub use group::{PlannedGroup, PlannedTarget, TargetStatus};
pub use load::rename_source_key;
pub use module_pattern::ModulePattern;
pub use options::PlanOptions;
pub use report::{
    ConversionError, ConverterOutput, DTypeMismatch, LoadReport, ShapeMismatch, UnusedTransform,
};
pub use shard::{ShardError, ShardSlice, Split, TensorParallel};

use crate::tensor::{DType, TensorMeta};
use crate::transform::{TransformError, WeightTransform};

/// Anything that gives a parameter's shape: a [`TensorMeta`], a `Vec<usize>`, an array.
pub trait ParamShape {
    /// The shape, outermost dimension first (PyTorch order).
    fn param_shape(&self) -> &[usize];

    /// The dtype the parameter holds once loaded, if known (a [`TensorMeta`] knows it): the plan
    /// then reports a checkpoint tensor of another kind (a float tensor for an int buffer) as a
    /// [`DTypeMismatch`]. Default: unknown, not checked.
    fn param_dtype(&self) -> Option<DType> {
        None
    }
}

impl ParamShape for TensorMeta {
    fn param_shape(&self) -> &[usize] {
        &self.shape
    }

    fn param_dtype(&self) -> Option<DType> {
        Some(self.dtype)
    }
}

impl ParamShape for Vec<usize> {
    fn param_shape(&self) -> &[usize] {
        self
    }
}

impl ParamShape for &[usize] {
    fn param_shape(&self) -> &[usize] {
        self
    }
}

impl<const N: usize> ParamShape for [usize; N] {
    fn param_shape(&self) -> &[usize] {
        self
    }
}

/// Whether a plan loads a checkpoint into a model or saves a model as a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Checkpoint keys to model parameters.
    Load,
    /// Model parameters to checkpoint keys (transforms reversed).
    Save,
}

/// What the loader (or saver) executes: groups of keys with their ops, and the report.
///
/// ```
/// use std::sync::Arc;
/// use patcher_core::ops::Concatenate;
/// use patcher_core::plan::{ConversionPlan, PlanOptions};
/// use patcher_core::{DType, HostTensor, TensorMeta, WeightConverter, WeightTransform};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let transforms: Vec<WeightTransform> = vec![WeightConverter::try_new(
///     ["q_proj.weight", "k_proj.weight", "v_proj.weight"],
///     "qkv_proj.weight",
///     vec![Arc::new(Concatenate::new(0))],
/// )?
/// .into()];
/// let meta = |shape: &[usize]| TensorMeta::new(DType::F32, shape.to_vec());
/// let checkpoint = [
///     ("layers.0.attn.q_proj.weight".to_string(), meta(&[2, 4])),
///     ("layers.0.attn.k_proj.weight".to_string(), meta(&[2, 4])),
///     ("layers.0.attn.v_proj.weight".to_string(), meta(&[2, 4])),
///     ("layers.0.attn.o_proj.weight".to_string(), meta(&[4, 2])),
/// ];
/// let expected = [
///     ("layers.0.attn.qkv_proj.weight", vec![6, 4]),
///     ("layers.0.attn.o_proj.weight", vec![4, 2]),
///     ("layers.0.norm.weight", vec![4]),
/// ];
/// let plan = ConversionPlan::new(&transforms, &checkpoint, &expected, &PlanOptions::default());
///
/// assert_eq!(plan.report().missing, ["layers.0.norm.weight"]);
/// assert!(!plan.is_clean());
/// println!("{}", plan.report()); // "Missing (left as initialized):\n  layers.0.norm.weight" ...
/// let qkv = plan.groups().iter().find(|g| g.transform == Some(0)).unwrap();
/// assert_eq!(qkv.targets[0].key, "layers.0.attn.qkv_proj.weight");
/// assert_eq!(qkv.targets[0].meta.shape, [6, 4]);
///
/// // Execute the group on its source tensors (the loader reads them from the checkpoint).
/// let inputs = qkv
///     .sources
///     .clone()
///     .map(|_key| HostTensor::new(DType::F32, [2, 4], vec![0u8; 2 * 4 * 4]));
/// let out = qkv.execute(inputs)?;
/// assert_eq!(out[0].0, "layers.0.attn.qkv_proj.weight");
/// assert_eq!(out[0].1.shape, [6, 4]);
///
/// // Saving back runs the used converter in reverse: Chunk into q, k and v.
/// let used = plan.used_transforms_of(&transforms);
/// let params = [("layers.0.attn.qkv_proj.weight", meta(&[6, 4]))];
/// let save = ConversionPlan::for_save(&used, &params, &PlanOptions::default())?;
/// assert_eq!(save.groups()[0].ops[0].name(), "Chunk(dim=0)");
/// let names: Vec<&str> = save.groups()[0].targets.iter().map(|t| t.key.as_str()).collect();
/// assert_eq!(
///     names,
///     ["layers.0.attn.q_proj.weight", "layers.0.attn.k_proj.weight", "layers.0.attn.v_proj.weight"]
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConversionPlan {
    direction: Direction,
    groups: Vec<PlannedGroup>,
    report: LoadReport,
    used: Vec<usize>,
    conversions: Vec<WeightTransform>,
}

impl ConversionPlan {
    /// Plans loading `checkpoint` (key, dtype and shape of every tensor) into a model whose
    /// parameters are `expected` (PyTorch names and shapes), through `transforms` (the model's
    /// conversions, after a patcher's [`WeightPatch`](crate::WeightPatch) if any).
    ///
    /// Keys are taken in natural order. Each goes through every renaming in order (chained), then
    /// the first converter whose pattern matches claims it, then the base model prefix is added
    /// or stripped; if the result is not a model key but the original key is, the original is
    /// used. Keys are grouped by the resulting (first target) key; shapes come from
    /// [`ConversionOp::infer`](crate::ConversionOp::infer) with the checkpoint dtypes.
    /// Everything that does not fit goes to the [`report`](Self::report).
    pub fn new<K, P, S>(
        transforms: &[WeightTransform],
        checkpoint: &[(K, TensorMeta)],
        expected: &[(P, S)],
        options: &PlanOptions,
    ) -> Self
    where
        K: AsRef<str>,
        P: AsRef<str>,
        S: ParamShape,
    {
        let checkpoint: Vec<(&str, &TensorMeta)> =
            checkpoint.iter().map(|(k, m)| (k.as_ref(), m)).collect();
        let expected: Vec<(&str, load::Expected<'_>)> = expected
            .iter()
            .map(|(k, s)| (k.as_ref(), (s.param_shape(), s.param_dtype())))
            .collect();
        load::plan_load(transforms, &checkpoint, &expected, options)
    }

    /// Plans saving a model's parameters (`params`: PyTorch names, dtypes and shapes) back in the
    /// checkpoint layout, through the reverse of `transforms` (those used when loading, see
    /// [`used_transforms_of`](Self::used_transforms_of)).
    ///
    /// Per parameter, in natural order: the first reversed converter that matches (transforms
    /// taken last to first) claims it, and its outputs then go through the reversed renamings;
    /// otherwise the reversed renamings rename it. A reversed renaming is skipped for a key its
    /// forward renaming would match: the key is already in checkpoint form, unless
    /// [`PlanOptions::source_keys`] says otherwise. Errors if a transform cannot be reversed.
    pub fn for_save<K: AsRef<str>>(
        transforms: &[WeightTransform],
        params: &[(K, TensorMeta)],
        options: &PlanOptions,
    ) -> Result<Self, TransformError> {
        let params: Vec<(&str, &TensorMeta)> =
            params.iter().map(|(k, m)| (k.as_ref(), m)).collect();
        save::plan_save(
            transforms,
            &params,
            options.base_model_prefix.as_deref(),
            &options.source_keys,
        )
    }

    /// Load or save.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The groups to execute, in order. Groups that write nothing are left out.
    pub fn groups(&self) -> &[PlannedGroup] {
        &self.groups
    }

    /// The groups, by value.
    pub fn into_groups(self) -> Vec<PlannedGroup> {
        self.groups
    }

    /// Unexpected, missing and mismatched keys, conversion errors, unused transforms.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// Whether the report has no unexpected, missing or mismatched key and no conversion error.
    pub fn is_clean(&self) -> bool {
        self.report.is_clean()
    }

    /// Indices of the transforms that took part in loading at least one parameter (all of them
    /// for a save plan).
    pub fn used_transforms(&self) -> &[usize] {
        &self.used
    }

    /// What a load used, ready to save back with: the transforms that took part (a converter's
    /// ops pinned to the shapes it saw, see [`ConversionOp::pinned`](crate::ConversionOp::pinned)),
    /// then the [reversible](PlanOptions::reversible) converters that ran backwards, reversed. Empty
    /// for a save plan.
    pub fn used_conversions(&self) -> &[WeightTransform] {
        &self.conversions
    }

    /// The used transforms out of the list the plan was made with, as declared (see
    /// [`used_conversions`](Self::used_conversions) for what to save back with).
    pub fn used_transforms_of(&self, transforms: &[WeightTransform]) -> Vec<WeightTransform> {
        self.used
            .iter()
            .filter_map(|&i| transforms.get(i).cloned())
            .collect()
    }
}
