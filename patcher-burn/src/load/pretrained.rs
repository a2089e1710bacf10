//! Loading a checkpoint into a model: plan, check, execute, apply.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::backend::Backend;
use patcher_core::pattern::natural_key_cmp;
use patcher_core::plan::{PlanOptions, TensorParallel};
use patcher_core::{Checkpoint, ConversionPlan, LoadReport, TensorMeta, WeightTransform};

use super::apply::Applier;
use super::error::LoadError;
use super::execute::Executor;
use super::finite::NonFiniteCount;
use super::host::float_dtype;
use super::layout::TorchLayouts;
use super::model::PretrainedModel;
use super::options::LoadOptions;
use super::params::{model_params_with, ParamInfo};
use super::quantize::{check_scheme, check_supported, model_device, QuantizeSelector};
use crate::visit;
use crate::Patcher;

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
    /// The PyTorch layouts the load used ([`LoadSpec::layouts`]): a save lays the model out
    /// with them again.
    pub layouts: TorchLayouts,
    /// Checkpoint bytes the load read: all of the tensors it used, or, for one peer of a
    /// [tensor-parallel](LoadOptions::tensor_parallel) load, about its share of the split ones
    /// and all of the others.
    pub bytes_read: u64,
    /// The peer's tensor-parallel plan, if the load was one peer's
    /// ([`LoadOptions::tensor_parallel`]): its parameters are slices, which a save refuses.
    pub tensor_parallel: Option<TensorParallel>,
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
    /// How the model's module types lay out their parameters in the checkpoint (the PyTorch
    /// layout step; default: Burn's layers).
    pub layouts: TorchLayouts,
    /// How many of the last `transforms` are the model's legacy renamings
    /// ([`PretrainedModel::legacy_weight_conversions`]), left out of its stock layout
    /// ([`Self::stock_transforms`]).
    pub legacy_transforms: usize,
}

impl LoadSpec {
    /// A spec of exactly `transforms`: nothing run backwards, no base model prefix, no keys
    /// ignored, Burn's layers' PyTorch layouts.
    pub fn of_transforms(transforms: impl IntoIterator<Item = WeightTransform>) -> Self {
        Self {
            transforms: transforms.into_iter().collect(),
            ..Self::default()
        }
    }

    /// `transforms` without the trailing legacy renamings: what turns a checkpoint in the
    /// model's stock (current transformers) layout into the model.
    pub fn stock_transforms(&self) -> &[WeightTransform] {
        let stock = self.transforms.len().saturating_sub(self.legacy_transforms);
        &self.transforms[..stock]
    }

    /// The spec of a [`PretrainedModel`] loaded through `patcher`: its default conversions with
    /// the patcher's filters and extra conversions, then its legacy renamings, the defaults also
    /// reversible, its base model prefix, keys to ignore and PyTorch layouts.
    pub fn for_model<B: Backend, M: PretrainedModel<B>>(patcher: &Patcher<B>) -> Self {
        let defaults = M::weight_conversions();
        let legacy = M::legacy_weight_conversions();
        let legacy_transforms = legacy.len();
        let mut transforms = patcher.update_weight_conversions(defaults.clone());
        transforms.extend(legacy);
        Self {
            transforms,
            legacy_transforms,
            unused_filters: patcher.weights().unused_filters(&defaults),
            reversible: defaults,
            base_model_prefix: M::base_model_prefix().map(str::to_string),
            ignore_unexpected: M::keys_to_ignore_on_load_unexpected(),
            layouts: M::torch_layouts(),
        }
    }
}

/// What a load of an open checkpoint would do, planned from the checkpoint's header and the
/// model's parameter list alone: [`plan_with`]'s result.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The conversion plan [`load_with`] executes.
    pub plan: ConversionPlan,
    /// The plan's report, with the spec's unused patcher filters
    /// ([`LoadSpec::unused_filters`]): what [`Loaded::report`] would be, or what
    /// [`LoadError::Incomplete`] would carry.
    pub report: LoadReport,
    /// Whether [`load_with`] with the same options would go past planning: the report is clean,
    /// or the options are [partial](LoadOptions::partial).
    pub would_load: bool,
}

impl LoadPlan {
    /// The conversions the load would use, ready to save back with (see
    /// [`ConversionPlan::used_conversions`]).
    pub fn used_conversions(&self) -> &[WeightTransform] {
        self.plan.used_conversions()
    }
}

/// Plans loading `checkpoint` into `model` as `spec` says, exactly as [`load_with`] does, and
/// stops there: no tensor byte is read and the model is untouched. The building block of
/// [`Pretrained::plan`](crate::Pretrained::plan), for any Burn module (not only a
/// [`PretrainedModel`]) with an explicit spec.
///
/// Errors are those of the spec itself (an invalid transform or ignore pattern, a backend
/// float type the loader does not know); a checkpoint that does not fit is not an error here
/// but a report that is not clean ([`LoadPlan::would_load`]).
pub fn plan_with<B: Backend, M: Module<B>>(
    model: &M,
    checkpoint: &Checkpoint,
    spec: &LoadSpec,
    options: &LoadOptions,
) -> Result<LoadPlan, LoadError> {
    let (plan, _) = plan_params(model, checkpoint, spec, options)?;
    Ok(plan)
}

/// [`plan_with`], with the model's parameters the plan was made for.
fn plan_params<B: Backend, M: Module<B>>(
    model: &M,
    checkpoint: &Checkpoint,
    spec: &LoadSpec,
    options: &LoadOptions,
) -> Result<(LoadPlan, Vec<ParamInfo>), LoadError> {
    let float = float_dtype::<B>()?;
    let params = model_params_with(model, &spec.layouts);
    let expected: Vec<_> = params.iter().map(|p| p.expected(float)).collect();
    let plan_options = PlanOptions::default()
        .base_model_prefix(spec.base_model_prefix.clone().unwrap_or_default())
        .reversible(spec.reversible.iter().cloned())
        .float_dtype(float)
        .ignore_unexpected(
            spec.ignore_unexpected
                .iter()
                .chain(options.ignore_patterns()),
        )?
        .ignore_missing(options.ignore_missing_patterns())?;
    let plan_options = match options.tensor_parallel_plan() {
        Some(tp) => plan_options.tensor_parallel(tp.clone()),
        None => plan_options,
    };
    for transform in &spec.transforms {
        transform.validate()?;
    }
    let plan = ConversionPlan::new(
        &spec.transforms,
        &checkpoint.metas(),
        &expected,
        &plan_options,
    );
    let mut report = plan.report().clone();
    report.unused_filters = spec.unused_filters.clone();
    // Legacy renamings are optional: a checkpoint in the current layout (most) matches none of
    // them, which is no warning.
    let stock = spec.stock_transforms().len();
    report.unused_transforms.retain(|t| t.index < stock);
    let would_load = !options.is_strict() || plan.is_clean();
    Ok((LoadPlan { plan, report, would_load }, params))
}

/// Loads an open `checkpoint` into a copy of `model` as `spec` says: the building block of
/// [`Pretrained`](crate::Pretrained)'s loads, for any Burn module (not only a
/// [`PretrainedModel`]) with an explicit spec. [`plan_with`] is its dry run.
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
    let _load = tracing::info_span!("load", checkpoint = %checkpoint.path().display()).entered();
    let started = Instant::now();
    let float = float_dtype::<B>()?;
    let quantize = QuantizeSelector::new(options.quantization_choice())?;
    if let Some(selector) = &quantize {
        let params = model_params_with(model, &spec.layouts);
        check_scheme::<B>(selector, &params, &model_device(model))?;
    }
    let (LoadPlan { plan, report, would_load }, params) =
        plan_params(model, checkpoint, spec, options)?;
    tracing::debug!(
        groups = plan.groups().len(),
        missing = report.missing.len(),
        unexpected = report.unexpected.len(),
        mismatched = report.mismatched.len(),
        would_load,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "planned"
    );
    if !would_load {
        return Err(LoadError::Incomplete { report: Box::new(report) });
    }

    let params: HashMap<&str, &ParamInfo> =
        params.iter().map(|p| (p.torch_name.as_str(), p)).collect();
    if let Some(selector) = &quantize {
        let written = plan
            .groups()
            .iter()
            .flat_map(|group| group.ready_targets())
            .filter_map(|target| params.get(target.key.as_str()).copied());
        check_supported::<B>(
            selector,
            written,
            float.size_in_bytes(),
            &model_device(model),
        )?;
    }
    let executor = Executor {
        checkpoint,
        params,
        float,
        non_finite: options.checks_finite().then(Default::default),
        linear_layout: options.linear_layout_choice(),
        quantize,
        bytes_read: AtomicU64::new(0),
    };
    // Work on a copy (parameters are reference-counted: cheap), so a failure midway leaves the
    // caller's model as it was.
    let loaded = executor.run(plan.groups(), options, model.clone(), |model, wave| {
        visit::map(model, Applier::new(wave))
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
        bytes_read: executor.bytes_read.load(Ordering::Relaxed),
        tensor_parallel: options.tensor_parallel_plan().cloned(),
        model: loaded,
        report,
        conversions: plan.used_conversions().to_vec(),
        non_finite,
        base_model_prefix: spec.base_model_prefix.clone(),
        layouts: spec.layouts.clone(),
        source_layout: checkpoint
            .metas()
            .into_iter()
            .filter(|(k, _)| read.contains(k.as_str()))
            .collect(),
    })
}
