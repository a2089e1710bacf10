//! Loading a checkpoint into a model: plan, check, execute, apply.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use patcher_core::pattern::natural_key_cmp;
use patcher_core::plan::PlanOptions;
use patcher_core::{Checkpoint, ConversionPlan, LoadReport, Patcher, TensorMeta, WeightTransform};

use super::apply::Applier;
use super::error::LoadError;
use super::execute::Executor;
use super::finite::NonFiniteCount;
use super::host::float_dtype;
use super::model::PretrainedModel;
use super::options::LoadOptions;
use super::params::model_params;
use super::quantize::{check_supported, model_device, QuantizeSelector};
use crate::build::BuildContext;

/// A loaded model, with what the load found and what saving it back needs.
#[derive(Debug)]
pub struct Loaded<M> {
    /// The model with the checkpoint's weights.
    pub model: M,
    /// What did not line up (empty for a strict load that succeeded, apart from unused
    /// conversions and ignored keys).
    pub report: LoadReport,
    /// The conversions that took part, ready to save back with: the used transforms (a
    /// converter's ops pinned to the shapes it saw), then the converters that ran backwards,
    /// reversed. [`save_pretrained`](crate::save_pretrained) reverses them.
    pub conversions: Vec<WeightTransform>,
    /// The model's base model prefix used by the load.
    pub base_model_prefix: Option<String>,
    /// The checkpoint keys the load read, with their dtypes and shapes on disk: the layout a save
    /// writes back, and checks it writes.
    pub source_layout: Vec<(String, TensorMeta)>,
    /// Checkpoint tensors holding NaN or infinite values, in natural key order, with their
    /// counts; only filled when the load ran with [`LoadOptions::check_finite`], else empty.
    pub non_finite: Vec<NonFiniteCount>,
}

/// What a load takes besides the model and the checkpoint: the conversions, what may run
/// backwards, the base model prefix and the keys to ignore.
#[derive(Debug, Clone, Default)]
pub struct LoadSpec {
    /// The conversions, in order (the model's defaults after a patcher, or your own).
    pub transforms: Vec<WeightTransform>,
    /// Converters that may run backwards when the checkpoint is in their converted layout
    /// (usually the model's default conversions, before a patcher filters them).
    pub reversible: Vec<WeightTransform>,
    /// transformers' `base_model_prefix`.
    pub base_model_prefix: Option<String>,
    /// Patterns of checkpoint keys to ignore (the model's; [`LoadOptions::ignore_unexpected`]
    /// adds more).
    pub ignore_unexpected: Vec<String>,
    /// Patcher filter patterns that removed no conversion (reported).
    pub unused_filters: Vec<String>,
}

impl LoadSpec {
    /// The spec of a [`PretrainedModel`] loaded through `patcher`: its default conversions with
    /// the patcher's filters and extra conversions, the defaults also reversible, its base model
    /// prefix and keys to ignore.
    pub fn for_model<B: Backend, M: PretrainedModel<B>>(patcher: &Patcher<B>) -> Self {
        let defaults = M::weight_conversions();
        Self {
            transforms: patcher.update_weight_conversions(defaults.clone()),
            unused_filters: patcher.unused_filters(&defaults),
            reversible: defaults,
            base_model_prefix: M::base_model_prefix().map(str::to_string),
            ignore_unexpected: M::keys_to_ignore_on_load_unexpected(),
        }
    }
}

/// Builds a patch-ready model with `patcher`'s substitutions and loads the safetensors checkpoint
/// at `path` (a file, a sharded index, or a folder holding either) into it: transformers'
/// `from_pretrained(..., patcher=patcher)`.
///
/// `constructor` is the model's constructor, building its slots through the
/// [`BuildContext`]. The conversions are the model's defaults
/// ([`PretrainedModel::weight_conversions`]) minus the patcher's filtered patterns, after its
/// extra conversions; then renamings, converters and the PyTorch-to-Burn layout step run in
/// that order. A checkpoint in a default converter's converted layout (transformers 5's fused
/// experts, say) also loads into a model that wants the converter's sources: the converter runs
/// backwards (see [`LoadReport::reversed`]).
pub fn from_pretrained<B, M>(
    path: impl AsRef<Path>,
    patcher: &Patcher<B>,
    device: &B::Device,
    constructor: impl FnOnce(&BuildContext<'_, B>) -> M,
    options: &LoadOptions,
) -> Result<Loaded<M>, LoadError>
where
    B: Backend,
    M: PretrainedModel<B>,
{
    // Open first: a missing checkpoint should not cost a model build.
    let checkpoint = Checkpoint::open(path)?;
    let model = BuildContext::build(patcher, device, constructor)?;
    load_with(
        &model,
        &checkpoint,
        &LoadSpec::for_model::<B, M>(patcher),
        options,
    )
}

/// Loads the checkpoint at `path` into a copy of an already built `model`, with the model's
/// default conversions as `patcher` changes them (its filters and extra conversions; its
/// `class_mapping` played its part when the model was built). `model` itself is untouched,
/// whatever happens.
pub fn load_into<B, M>(
    model: &M,
    path: impl AsRef<Path>,
    patcher: &Patcher<B>,
    options: &LoadOptions,
) -> Result<Loaded<M>, LoadError>
where
    B: Backend,
    M: PretrainedModel<B>,
{
    let checkpoint = Checkpoint::open(path)?;
    load_with(
        model,
        &checkpoint,
        &LoadSpec::for_model::<B, M>(patcher),
        options,
    )
}

/// Loads an open `checkpoint` into a copy of `model` through exactly `transforms` (no model
/// defaults, no patcher, nothing run backwards): the simplest form of [`load_with`].
pub fn load_checkpoint<B: Backend, M: Module<B>>(
    model: &M,
    checkpoint: &Checkpoint,
    transforms: &[WeightTransform],
    base_model_prefix: Option<&str>,
    options: &LoadOptions,
) -> Result<Loaded<M>, LoadError> {
    let spec = LoadSpec {
        transforms: transforms.to_vec(),
        base_model_prefix: base_model_prefix.map(str::to_string),
        ..LoadSpec::default()
    };
    load_with(model, checkpoint, &spec, options)
}

/// Loads an open `checkpoint` into a copy of `model` as `spec` says: the building block of
/// [`from_pretrained`] and [`load_into`].
///
/// Strict by default: if the plan finds unexpected keys, missing parameters, shape or dtype
/// mismatches or conversion errors, nothing is loaded and the error carries the report. With
/// [`LoadOptions::partial`] what fits is loaded and the rest is reported.
pub fn load_with<B: Backend, M: Module<B>>(
    model: &M,
    checkpoint: &Checkpoint,
    spec: &LoadSpec,
    options: &LoadOptions,
) -> Result<Loaded<M>, LoadError> {
    let float = float_dtype::<B>()?;
    let params = model_params(model);
    let expected: Vec<_> = params.iter().map(|p| p.expected(float)).collect();
    let plan_options = PlanOptions::default()
        .base_model_prefix(spec.base_model_prefix.clone().unwrap_or_default())
        .reversible(spec.reversible.iter().cloned())
        .float_dtype(float)
        .ignore_unexpected(
            spec.ignore_unexpected
                .iter()
                .chain(options.ignore_patterns()),
        )?;
    let metas = checkpoint.metas();
    let plan = ConversionPlan::new(&spec.transforms, &metas, &expected, &plan_options);
    let mut report = plan.report().clone();
    report.unused_filters = spec.unused_filters.clone();
    if options.is_strict() && !plan.is_clean() {
        return Err(LoadError::Incomplete {
            report: Box::new(report),
        });
    }

    if let Some(quantization) = options.quantization_choice() {
        check_supported::<B>(&quantization.scheme, &model_device(model))?;
    }
    let executor = Executor {
        checkpoint,
        params: params
            .iter()
            .map(|p| (p.torch_name.as_str(), p))
            .collect::<HashMap<_, _>>(),
        float,
        non_finite: options.checks_finite().then(Default::default),
        linear_layout: options.linear_layout_choice(),
        quantize: QuantizeSelector::new(options.quantization_choice())?,
    };
    // Work on a copy (parameters are reference-counted: cheap), so a failure midway leaves the
    // caller's model as it was.
    let loaded = executor.run(plan.groups(), options, model.clone(), |model, wave| {
        model.map(&mut Applier::new(wave))
    })?;
    let mut non_finite = executor
        .non_finite
        .map(|found| found.into_inner().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_default();
    non_finite.sort_by(|a, b| natural_key_cmp(&a.key, &b.key));
    let read: HashSet<&str> = plan
        .groups()
        .iter()
        .flat_map(|g| g.sources.iter().flat_map(|(_, keys)| keys))
        .map(String::as_str)
        .collect();
    Ok(Loaded {
        model: loaded,
        report,
        conversions: plan.used_conversions().to_vec(),
        non_finite,
        base_model_prefix: spec.base_model_prefix.clone(),
        source_layout: metas
            .into_iter()
            .filter(|(k, _)| read.contains(k.as_str()))
            .collect(),
    })
}
