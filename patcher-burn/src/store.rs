//! [`PatcherStore`]: burn-store's `ModuleStore` over a transformers checkpoint, so that
//! `model.load_from(&mut store)` and `model.save_into(&mut store)` load and save through the
//! patcher's conversions, as Burn users already write with burn-store's own stores.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::module::{Module, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType as BurnDType, Shape, TensorData};
use burn_store::{
    ApplyError, ApplyResult, ModuleSnapshot, ModuleStore, TensorSnapshot, TensorSnapshotError,
};
use patcher_core::{Checkpoint, DType, LoadReport, TensorMeta, WeightTransform};

use crate::load::{load_with, model_params_with, LoadError, LoadOptions, LoadSpec, TorchLayouts};
use crate::save::{refuse_peer_slices, save_parts, SaveError, SaveOptions};

/// What a store operation failed on: the load or the save, with its own typed error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `load_from` failed; the module is untouched.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `save_into` failed; nothing was committed.
    #[error(transparent)]
    Save(#[from] SaveError),
}

/// A transformers safetensors checkpoint as a burn-store `ModuleStore`: `load_from` loads it
/// through a [`LoadSpec`] (the model's conversions as a patcher changes them, converters run
/// backwards where the checkpoint needs it, the PyTorch layouts) and `save_into` writes the
/// module back in the checkpoint's layout. Made by [`Pretrained::store`](crate::Pretrained::store).
///
/// - `load_from` is strict unless the options are [partial](LoadOptions::partial): a
///   checkpoint that does not fit is an error carrying the report, and the module is
///   untouched. Its `ApplyResult` says what happened, in Burn's paths for parameters and the
///   checkpoint's keys for tensors: `applied` (parameters loaded), `missing` (parameters the
///   checkpoint lacks, with their checkpoint names as the container), `skipped` (checkpoint
///   keys ignored on purpose), `unused` (checkpoint keys nothing took, and converter outputs
///   the model has no parameter for), `errors` (shape, dtype
///   and conversion mismatches of a partial load).
/// - `save_into` after a `load_from` saves in the layout that was loaded, verified to load back
///   bit for bit (as [`save_pretrained`](crate::save_pretrained)); before any load, in the
///   model's stock layout (as [`save_model`](crate::save_model)). It writes to the store's
///   path unless [`save_to`](Self::save_to) names another. Either way the save is one commit.
/// - `get_snapshot`, `get_all_snapshots` and `keys` show the checkpoint's tensors as stored:
///   checkpoint keys, PyTorch layout, read when their data is asked for.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::nn::LinearConfig;
/// use burn_store::ModuleSnapshot;
/// use patcher_burn::Pretrained;
/// use patcher_core::{save_safetensors, Checkpoint, HostTensor};
///
/// let dir = std::env::temp_dir().join(format!("store-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let weight: Vec<f32> = (0..6).map(|i| i as f32).collect();
/// let tensors = [("weight".to_string(), HostTensor::from_f32([3, 2], &weight))];
/// save_safetensors(dir.join("model.safetensors"), tensors, None)?;
///
/// let mut linear = LinearConfig::new(2, 3).with_bias(false).init::<NdArray>(&Default::default());
/// let pretrained = Pretrained::<NdArray>::from_path(&dir);
/// let mut store = pretrained.store::<burn::nn::Linear<NdArray>>()?;
/// let result = linear.load_from(&mut store)?;
/// assert_eq!(result.applied, ["weight"]);
/// // Saved back in PyTorch's layout, the same bytes:
/// let mut store = store.save_to(dir.join("copy.safetensors"));
/// linear.save_into(&mut store)?;
/// let copy = Checkpoint::open(dir.join("copy.safetensors"))?;
/// assert_eq!(copy.get("weight")?.read()?, HostTensor::from_f32([3, 2], &weight));
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PatcherStore {
    path: PathBuf,
    save_path: Option<PathBuf>,
    spec: LoadSpec,
    options: LoadOptions,
    save_options: SaveOptions,
    /// What the last `load_from` read, so that a save writes that layout back.
    loaded: Option<LoadedLayout>,
    /// The checkpoint's tensors, listed on the first snapshot call.
    snapshots: Option<BTreeMap<String, TensorSnapshot>>,
}

/// A load's layout: what saving back in it needs.
struct LoadedLayout {
    conversions: Vec<WeightTransform>,
    base_model_prefix: Option<String>,
    source_layout: Vec<(String, TensorMeta)>,
    layouts: TorchLayouts,
}

impl PatcherStore {
    /// The store of the checkpoint at `path`, loaded through `spec` with `options`.
    pub fn new(path: impl AsRef<Path>, spec: LoadSpec, options: LoadOptions) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            save_path: None,
            spec,
            options,
            save_options: SaveOptions::default(),
            loaded: None,
            snapshots: None,
        }
    }

    /// Saves to `path` (a `.safetensors` file or a folder) instead of the checkpoint's own path.
    pub fn save_to(mut self, path: impl AsRef<Path>) -> Self {
        self.save_path = Some(path.as_ref().to_path_buf());
        self
    }

    /// Saves with `options` (shards, float dtype, parameter filters).
    pub fn save_options(mut self, options: SaveOptions) -> Self {
        self.save_options = options;
        self
    }

    /// The conversions, prefix, keys to ignore and layouts this store loads through.
    pub fn spec(&self) -> &LoadSpec {
        &self.spec
    }

    fn snapshots(&mut self) -> Result<&BTreeMap<String, TensorSnapshot>, StoreError> {
        if self.snapshots.is_none() {
            let checkpoint = Rc::new(Checkpoint::open(&self.path).map_err(LoadError::from)?);
            let snapshots = checkpoint
                .metas()
                .into_iter()
                .map(|(key, meta)| {
                    let snapshot = snapshot_of(&checkpoint, &key, &meta);
                    (key, snapshot)
                })
                .collect();
            self.snapshots = Some(snapshots);
        }
        Ok(self.snapshots.get_or_insert_with(BTreeMap::new))
    }
}

impl ModuleStore for PatcherStore {
    type Error = StoreError;

    fn collect_from<B: Backend, M: ModuleSnapshot<B>>(
        &mut self,
        module: &M,
    ) -> Result<(), StoreError> {
        refuse_peer_slices(self.options.tensor_parallel_plan())?;
        let path = self.save_path.as_ref().unwrap_or(&self.path);
        let options = &self.save_options;
        // The layout that was loaded, or (no load yet) the model's stock layout.
        let (conversions, prefix, source_layout, layouts) = match &self.loaded {
            Some(loaded) => (
                &loaded.conversions[..],
                &loaded.base_model_prefix,
                &loaded.source_layout[..],
                &loaded.layouts,
            ),
            None => (
                self.spec.stock_transforms(),
                &self.spec.base_model_prefix,
                &[][..],
                &self.spec.layouts,
            ),
        };
        let layouts = options.torch_layouts_choice().unwrap_or(layouts);
        save_parts(
            module,
            path,
            conversions,
            prefix.as_deref(),
            source_layout,
            layouts,
            options,
        )?;
        Ok(())
    }

    fn apply_to<B: Backend, M: ModuleSnapshot<B>>(
        &mut self,
        module: &mut M,
    ) -> Result<ApplyResult, StoreError> {
        let checkpoint = Checkpoint::open(&self.path).map_err(LoadError::from)?;
        let loaded = load_with(&*module, &checkpoint, &self.spec, &self.options)?;
        let result = apply_result(&loaded.model, &self.spec.layouts, &loaded.report);
        *module = loaded.model;
        self.loaded = Some(LoadedLayout {
            conversions: loaded.conversions,
            base_model_prefix: loaded.base_model_prefix,
            source_layout: loaded.source_layout,
            layouts: loaded.layouts,
        });
        Ok(result)
    }

    fn get_snapshot(&mut self, name: &str) -> Result<Option<&TensorSnapshot>, StoreError> {
        Ok(self.snapshots()?.get(name))
    }

    fn get_all_snapshots(&mut self) -> Result<&BTreeMap<String, TensorSnapshot>, StoreError> {
        self.snapshots()
    }

    fn keys(&mut self) -> Result<Vec<String>, StoreError> {
        Ok(self.snapshots()?.keys().cloned().collect())
    }
}

/// burn-store's account of a load, from the loader's report: parameters by Burn path,
/// checkpoint tensors by key.
fn apply_result<B: Backend, M: Module<B>>(
    model: &M,
    layouts: &TorchLayouts,
    report: &LoadReport,
) -> ApplyResult {
    let params = model_params_with(model, layouts);
    let burn_path = |torch_name: &str| {
        params
            .iter()
            .find(|p| p.torch_name == torch_name)
            .map_or_else(|| torch_name.to_string(), |p| p.burn_path.clone())
    };
    let mut errors = Vec::new();
    for m in &report.mismatched {
        errors.push(ApplyError::ShapeMismatch {
            path: burn_path(&m.name),
            expected: Shape::from(m.model_shape.clone()),
            found: Shape::from(m.checkpoint_shape.clone()),
        });
    }
    for m in &report.dtype_mismatches {
        errors.push(ApplyError::DTypeMismatch {
            path: burn_path(&m.name),
            expected: burn_dtype(m.model_dtype),
            found: burn_dtype(m.checkpoint_dtype),
        });
    }
    for e in &report.conversion_errors {
        let op =
            e.op.as_deref()
                .map(|op| format!(" ({op})"))
                .unwrap_or_default();
        errors.push(ApplyError::AdapterError {
            path: burn_path(&e.target),
            message: format!("{}{op}", e.message),
        });
    }
    let not_loaded: HashSet<&str> = report
        .missing
        .iter()
        .chain(&report.missing_ignored)
        .chain(report.mismatched.iter().map(|m| &m.name))
        .chain(report.dtype_mismatches.iter().map(|m| &m.name))
        .chain(report.conversion_errors.iter().map(|e| &e.target))
        .map(String::as_str)
        .collect();
    ApplyResult {
        applied: params
            .iter()
            .filter(|p| !not_loaded.contains(p.torch_name.as_str()))
            .map(|p| p.burn_path.clone())
            .collect(),
        skipped: report.ignored.clone(),
        missing: report
            .missing
            .iter()
            .chain(&report.missing_ignored)
            .map(|name| (burn_path(name), name.clone()))
            .collect(),
        unused: report
            .unexpected
            .iter()
            .chain(report.unexpected_outputs.iter().map(|o| &o.key))
            .cloned()
            .collect(),
        errors,
    }
}

/// A checkpoint tensor as a lazy snapshot: read from the file when its data is asked for.
fn snapshot_of(checkpoint: &Rc<Checkpoint>, key: &str, meta: &TensorMeta) -> TensorSnapshot {
    let (checkpoint, name) = (Rc::clone(checkpoint), key.to_string());
    let dtype = burn_dtype(meta.dtype);
    let read = move || {
        let tensor = checkpoint
            .get(&name)
            .and_then(|t| t.read())
            .map_err(|e| TensorSnapshotError::IoError(e.to_string()))?;
        let shape = tensor.shape.clone();
        Ok(TensorData::from_bytes_vec(
            tensor.bytes.into_owned(),
            shape,
            dtype,
        ))
    };
    let path = key.split('.').map(str::to_string).collect();
    TensorSnapshot::from_closure(
        Rc::new(read),
        dtype,
        Shape::from(meta.shape.clone()),
        path,
        Vec::new(),
        ParamId::new(),
    )
}

/// Burn's name for a checkpoint dtype.
fn burn_dtype(dtype: DType) -> BurnDType {
    match dtype {
        DType::F32 => BurnDType::F32,
        DType::F16 => BurnDType::F16,
        DType::BF16 => BurnDType::BF16,
        DType::F64 => BurnDType::F64,
        DType::I64 => BurnDType::I64,
        DType::I32 => BurnDType::I32,
        DType::U8 => BurnDType::U8,
        DType::Bool => BurnDType::Bool(burn::tensor::BoolStore::Native),
    }
}
