//! Loading a checkpoint into a model: plan, check, execute, apply.

use std::collections::HashMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use patcher_core::pattern::natural_key_cmp;
use patcher_core::plan::PlanOptions;
use patcher_core::{Checkpoint, ConversionPlan, LoadReport, Patcher, WeightTransform};

use super::apply::Applier;
use super::error::LoadError;
use super::execute::Executor;
use super::finite::NonFiniteCount;
use super::host::float_dtype;
use super::model::PretrainedModel;
use super::options::LoadOptions;
use super::params::model_params;
use crate::build::BuildContext;

/// A loaded model, with what the load found and the conversions it used.
#[derive(Debug)]
pub struct Loaded<M> {
    /// The model with the checkpoint's weights.
    pub model: M,
    /// What did not line up (empty for a strict load that succeeded, apart from unused
    /// conversions).
    pub report: LoadReport,
    /// The conversions that took part: give them to [`save_pretrained`](crate::save_pretrained)
    /// to write the model back in the checkpoint's layout.
    pub conversions: Vec<WeightTransform>,
    /// Checkpoint tensors holding NaN or infinite values, in natural key order, with their
    /// counts; only filled when the load ran with [`LoadOptions::check_finite`], else empty.
    pub non_finite: Vec<NonFiniteCount>,
}

/// Builds a patch-ready model with `patcher`'s substitutions and loads the safetensors checkpoint
/// at `path` (a file, a sharded index, or a folder holding either) into it: transformers'
/// `from_pretrained(..., patcher=patcher)`.
///
/// `constructor` is the model's constructor, building its slots through the
/// [`BuildContext`]. The conversions are the model's defaults
/// ([`PretrainedModel::weight_conversions`]) minus the patcher's filtered patterns, after its
/// extra conversions; then renamings, converters and the PyTorch-to-Burn layout step run in
/// that order.
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
    let transforms = patcher.update_weight_conversions(M::weight_conversions());
    load_checkpoint(
        &model,
        &checkpoint,
        &transforms,
        M::base_model_prefix(),
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
    let transforms = patcher.update_weight_conversions(M::weight_conversions());
    load_checkpoint(
        model,
        &checkpoint,
        &transforms,
        M::base_model_prefix(),
        options,
    )
}

/// Loads an open `checkpoint` into a copy of `model` through exactly `transforms` (no model
/// defaults, no patcher): the building block of [`from_pretrained`] and [`load_into`].
///
/// Strict by default: if the plan finds unexpected keys, missing parameters, shape mismatches
/// or conversion errors, nothing is loaded and the error carries the report.
pub fn load_checkpoint<B: Backend, M: Module<B>>(
    model: &M,
    checkpoint: &Checkpoint,
    transforms: &[WeightTransform],
    base_model_prefix: Option<&str>,
    options: &LoadOptions,
) -> Result<Loaded<M>, LoadError> {
    let float = float_dtype::<B>()?;
    let params = model_params(model);
    let expected: Vec<_> = params.iter().map(|p| p.expected(float)).collect();
    let expected: Vec<_> = expected
        .iter()
        .map(|(k, m)| (k.as_str(), &m.shape[..]))
        .collect();
    let plan_options =
        PlanOptions::default().base_model_prefix(base_model_prefix.unwrap_or_default());
    let plan = ConversionPlan::new(transforms, &checkpoint.metas(), &expected, &plan_options);
    if options.is_strict() && !plan.is_clean() {
        return Err(LoadError::Incomplete {
            report: Box::new(plan.report().clone()),
        });
    }

    let executor = Executor {
        checkpoint,
        params: params
            .iter()
            .map(|p| (p.torch_name.as_str(), p))
            .collect::<HashMap<_, _>>(),
        float,
        non_finite: options.checks_finite().then(Default::default),
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
    Ok(Loaded {
        model: loaded,
        report: plan.report().clone(),
        conversions: plan.used_transforms_of(transforms),
        non_finite,
    })
}
