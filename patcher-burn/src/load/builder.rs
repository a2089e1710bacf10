//! [`Pretrained`]: the one way to load a checkpoint. Say where it is, which patcher and options
//! to use, then plan the load, load into a new model, or into one already built.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use patcher_core::{Checkpoint, PatcherErrors};

use super::error::LoadError;
use super::model::PretrainedModel;
use super::options::LoadOptions;
use super::pretrained::{load_with, plan_with, LoadPlan, LoadSpec, Loaded};
use crate::slot::{BuildContext, BuildError, BuildOptions};
use crate::store::PatcherStore;
use crate::{DeviceMap, Patcher, TensorParallelPeer};

/// A checkpoint to load, with the patcher and options to load it with: transformers'
/// `from_pretrained(path, patcher=...)` as a builder.
///
/// The conversions are the model's ([`PretrainedModel::weight_conversions`]) as the patcher
/// changes them (its filters and extra conversions), then its legacy renamings, unless
/// [`spec`](Self::spec) gives them explicitly. A checkpoint in a default converter's converted
/// layout also loads into a model that wants the converter's sources: the converter runs
/// backwards (see [`LoadReport::reversed`](patcher_core::LoadReport::reversed)).
///
/// Three ways to finish: [`build`](Self::build) a new model with the patcher's substitutions
/// and load it, [`load_into`](Self::load_into) a copy of a model already built, or
/// [`plan`](Self::plan) the load without reading a tensor byte. [`store`](Self::store) makes a
/// burn-store `ModuleStore` of it, for `model.load_from(&mut store)`.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::prelude::*;
/// use patcher_burn::{LoadOptions, LoadSpec, Pretrained};
/// use patcher_core::{save_safetensors, Checkpoint, HostTensor, WeightRenaming};
///
/// let dir = std::env::temp_dir().join(format!("pretrained-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let weight: Vec<f32> = (0..6).map(|i| i as f32).collect();
/// let tensors = [("weight".to_string(), HostTensor::from_f32([3, 2], &weight))];
/// save_safetensors(dir.join("model.safetensors"), tensors, None)?;
///
/// let device = Default::default();
/// let pretrained = Pretrained::<NdArray>::from_path(&dir).options(LoadOptions::default());
/// // A new model, built and loaded (PyTorch's `[out, in]` is Burn's `[in, out]`):
/// let linear = LinearConfig::new(2, 3).with_bias(false);
/// let loaded = pretrained.build(&device, |ctx| linear.init::<NdArray>(ctx.device()))?;
/// let burn_weight = loaded.model.weight.val().into_data().to_vec::<f32>()?;
/// assert_eq!(burn_weight, [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
/// // The plan of a load into a model of another shape says why it would not load:
/// let plan = pretrained.plan(&LinearConfig::new(2, 4).with_bias(false).init(&device))?;
/// assert!(!plan.would_load && plan.report.mismatched.len() == 1);
///
/// // Explicit conversions instead of the model's, on a checkpoint opened once:
/// let file = dir.join("prefixed.safetensors");
/// let tensors = [("proj.weight".to_string(), HostTensor::from_f32([3, 2], &weight))];
/// save_safetensors(&file, tensors, None)?;
/// let checkpoint = Checkpoint::open(&file)?;
/// let renaming = WeightRenaming::new(r"^proj\.weight$", "weight")?;
/// let spec = LoadSpec::of_transforms([renaming.into()]);
/// let again = Pretrained::from_checkpoint(&checkpoint).spec(spec).load_into(&loaded.model)?;
/// assert_eq!(again.model.weight.val().into_data().to_vec::<f32>()?, burn_weight);
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pretrained<'a, B: Backend> {
    source: Source<'a>,
    patcher: Option<&'a Patcher<B>>,
    spec: Option<LoadSpec>,
    options: LoadOptions,
    build: BuildOptions<B>,
}

/// Where the checkpoint is.
enum Source<'a> {
    /// A file, a sharded index, or a folder holding either; opened by each load.
    Path(PathBuf),
    /// Opened already.
    Open(&'a Checkpoint),
}

impl<'a, B: Backend> Pretrained<'a, B> {
    /// The safetensors checkpoint at `path`: a file, a sharded index, or a folder holding
    /// either. Nothing is read until the load.
    pub fn from_path(path: impl AsRef<Path>) -> Self {
        Self::with_source(Source::Path(path.as_ref().to_path_buf()))
    }

    /// A checkpoint opened already (its header read once for several loads or plans).
    pub fn from_checkpoint(checkpoint: &'a Checkpoint) -> Self {
        Self::with_source(Source::Open(checkpoint))
    }

    fn with_source(source: Source<'a>) -> Self {
        Self {
            source,
            patcher: None,
            spec: None,
            options: LoadOptions::default(),
            build: BuildOptions::default(),
        }
    }

    /// Loads through `patcher`: its class mapping decides what [`build`](Self::build) builds,
    /// its weight half (filters, extra conversions) changes the model's conversions. Default:
    /// an empty patcher.
    pub fn patcher(mut self, patcher: &'a Patcher<B>) -> Self {
        self.patcher = Some(patcher);
        self
    }

    /// Loads with `options` (strict or partial, dtype checks, quantization, threads...).
    /// Default: [`LoadOptions::default`].
    pub fn options(mut self, options: LoadOptions) -> Self {
        self.options = match self.build.peer() {
            Some(peer) => options.tensor_parallel(peer.plan().clone()),
            None => options,
        };
        self
    }

    /// Loads and builds as one peer of a tensor-parallel group: each split parameter's slice
    /// of the peer's plan is read (as [`LoadOptions::tensor_parallel`]), and
    /// [`build`](Self::build) builds the model with the peer
    /// ([`BuildContext::tensor_parallel`]), so its forward sums its partial results with
    /// the others' (a peer made by `Collective::register`, feature `collective`, say).
    /// Build from the peer's config (the kit's `TensorParallelConfig`), and run every peer's
    /// forward on the same inputs.
    pub fn tensor_parallel(mut self, peer: TensorParallelPeer<B>) -> Self {
        self.options = self.options.tensor_parallel(peer.plan().clone());
        self.build = self.build.tensor_parallel(peer);
        self
    }

    /// [`build`](Self::build)s each slot `map` names on its device (and loads its parameters
    /// there); the rest on the device given to `build`. The kit's decoders move their
    /// activations at each boundary between layers on different devices.
    pub fn device_map(mut self, map: DeviceMap<B>) -> Self {
        self.build = self.build.device_map(map);
        self
    }

    /// Loads through exactly `spec` (conversions, base model prefix, keys to ignore, layouts)
    /// instead of the model's defaults as the patcher changes them; the patcher's class
    /// mapping still decides what [`build`](Self::build) builds.
    pub fn spec(mut self, spec: LoadSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// The checkpoint's path, as given (or as the open checkpoint was opened).
    pub fn path(&self) -> &Path {
        match &self.source {
            Source::Path(path) => path,
            Source::Open(checkpoint) => checkpoint.path(),
        }
    }

    /// The options the load runs with.
    pub fn load_options(&self) -> &LoadOptions {
        &self.options
    }

    /// This builder (patcher, options, spec) on `checkpoint`, opened already: what a caller that
    /// reads the checkpoint's header first (a config check) loads with, without opening it again.
    pub fn on_checkpoint<'c>(&self, checkpoint: &'c Checkpoint) -> Pretrained<'c, B>
    where
        'a: 'c,
    {
        Pretrained {
            source: Source::Open(checkpoint),
            patcher: self.patcher,
            spec: self.spec.clone(),
            options: self.options.clone(),
            build: self.build.clone(),
        }
    }

    /// Runs `f` on the checkpoint: the open one, or the one at the path, opened now.
    pub fn with_checkpoint<R>(
        &self,
        f: impl FnOnce(&Checkpoint) -> Result<R, LoadError>,
    ) -> Result<R, LoadError> {
        match &self.source {
            Source::Path(path) => f(&Checkpoint::open(path)?),
            Source::Open(checkpoint) => f(checkpoint),
        }
    }

    /// What a load into `model` would do, planned from the checkpoint's header and the model's
    /// parameter list alone: no tensor byte is read and `model` is untouched (build the model
    /// as the load would; Burn's initializers make parameters lazy, so a model built only to
    /// be planned allocates no weights).
    ///
    /// Errors are those of the spec itself (an invalid transform or ignore pattern, a patcher
    /// with errors); a checkpoint that does not fit is not an error here but a report that is
    /// not clean ([`LoadPlan::would_load`]).
    pub fn plan<M: PretrainedModel<B>>(&self, model: &M) -> Result<LoadPlan, LoadError> {
        let spec = self.spec_for::<M>()?;
        self.with_checkpoint(|checkpoint| plan_with(model, checkpoint, &spec, &self.options))
    }

    /// Builds a model with the patcher's substitutions (`constructor` builds its slots through
    /// the [`BuildContext`]) and loads the checkpoint into it.
    ///
    /// Strict by default: if the plan finds unexpected keys, missing parameters, shape or dtype
    /// mismatches or conversion errors, nothing is loaded and the error carries the report.
    /// With [`LoadOptions::partial`] what fits is loaded and the rest is reported.
    pub fn build<M: PretrainedModel<B>>(
        &self,
        device: &B::Device,
        constructor: impl Fn(&BuildContext<'_, B>) -> M,
    ) -> Result<Loaded<M>, LoadError> {
        let spec = self.spec_for::<M>()?;
        // Open first: a missing checkpoint should not cost a model build.
        self.with_checkpoint(|checkpoint| {
            let default = Patcher::new();
            let patcher = self.patcher.unwrap_or(&default);
            let model = BuildContext::build_with(patcher, device, &self.build, constructor)?;
            load_with(&model, checkpoint, &spec, &self.options)
        })
    }

    /// Loads the checkpoint into a copy of `model`, built already (the patcher's class mapping
    /// played its part then; its weight half is used now). `model` itself is untouched,
    /// whatever happens.
    pub fn load_into<M: PretrainedModel<B>>(&self, model: &M) -> Result<Loaded<M>, LoadError> {
        let spec = self.spec_for::<M>()?;
        self.with_checkpoint(|checkpoint| load_with(model, checkpoint, &spec, &self.options))
    }

    /// A burn-store `ModuleStore` of this checkpoint for models of type `M`, for
    /// `model.load_from(&mut store)` and `model.save_into(&mut store)` (see [`PatcherStore`]).
    pub fn store<M: PretrainedModel<B>>(&self) -> Result<PatcherStore, LoadError> {
        Ok(PatcherStore::new(
            self.path(),
            self.spec_for::<M>()?,
            self.options.clone(),
        ))
    }

    /// The spec of a load into an `M`: the explicit one, or the model's defaults through the
    /// patcher, whose weight-half mistakes are errors.
    fn spec_for<M: PretrainedModel<B>>(&self) -> Result<LoadSpec, LoadError> {
        if let Some(patcher) = self.patcher {
            let errors = patcher.weights().errors();
            if !errors.is_empty() {
                return Err(BuildError::Patcher(PatcherErrors(errors.to_vec())).into());
            }
        }
        Ok(match (&self.spec, self.patcher) {
            (Some(spec), _) => spec.clone(),
            (None, Some(patcher)) => LoadSpec::for_model::<B, M>(patcher),
            (None, None) => LoadSpec::for_model::<B, M>(&Patcher::new()),
        })
    }
}
