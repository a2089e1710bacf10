//! Saving a (patched) model in the layout of the checkpoint it was loaded from: the conversions
//! the load used run in reverse, the layout step is undone, the result is checked to load back
//! (metadata only) and then written atomically, in one file or in shards with an index.

mod collect;
mod error;
mod files;
mod filter;
mod tensor_parallel;
mod verify;

pub use error::SaveError;
pub use tensor_parallel::save_tensor_parallel;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use patcher_core::pattern::IntoPatterns;
use patcher_core::plan::{PlanOptions, TensorParallel};
use patcher_core::{DType, HostTensor, LossyNarrowing, TensorMeta, WeightTransform};

use crate::load::{Loaded, TorchLayouts};

/// How a save writes.
///
/// ```
/// use patcher_burn::SaveOptions;
/// let options = SaveOptions::default().max_shard_size(5 << 30);
/// assert_eq!(options.shard_bytes(), Some(5 << 30));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaveOptions {
    max_shard_size: Option<u64>,
    torch_layouts: Option<TorchLayouts>,
    float_dtype: Option<DType>,
    only_params: Vec<String>,
    skip_params: Vec<String>,
    narrowing: LossyNarrowing,
}

impl SaveOptions {
    /// Splits the file into shards of at most `bytes` of tensor data each (a larger tensor gets
    /// a shard of its own), with a `*.safetensors.index.json`, as transformers'
    /// `save_pretrained(max_shard_size=...)`. Default: one file.
    pub fn max_shard_size(mut self, bytes: u64) -> Self {
        self.max_shard_size = Some(bytes.max(1));
        self
    }

    /// The shard size, if set.
    pub fn shard_bytes(&self) -> Option<u64> {
        self.max_shard_size
    }

    /// Lays the model's parameters out in PyTorch's layout as `layouts` says. Default: the
    /// layouts the model was loaded with ([`Loaded::layouts`]) for [`save_pretrained`], Burn's
    /// layers ([`TorchLayouts::default`]) for [`save_model`].
    ///
    /// ```
    /// use patcher_burn::{SaveOptions, TorchLayouts};
    /// let options = SaveOptions::default().torch_layouts(TorchLayouts::empty());
    /// assert_eq!(options.torch_layouts_choice(), Some(&TorchLayouts::empty()));
    /// ```
    pub fn torch_layouts(mut self, layouts: TorchLayouts) -> Self {
        self.torch_layouts = Some(layouts);
        self
    }

    /// The layouts set with [`torch_layouts`](Self::torch_layouts), if any.
    pub fn torch_layouts_choice(&self) -> Option<&TorchLayouts> {
        self.torch_layouts.as_ref()
    }

    /// Writes every float tensor in `dtype` (a float dtype: `F32`, `F16`, `BF16`, `F64`), cast
    /// from the model's float type, e.g. `F32` to save a model loaded from a bfloat16
    /// checkpoint at full precision. Integer and boolean tensors are written as they are.
    ///
    /// Default: each float tensor in the dtype it had in the checkpoint it was loaded from
    /// ([`Loaded::source_layout`]; bf16 and f16 values survive the round trip through f32, so
    /// an untrained tensor is written byte for byte as it was read), and the model's float type
    /// for a tensor the checkpoint did not hold (or with [`save_model`]).
    ///
    /// Lossy narrowing is refused: a finite value beyond `dtype`'s range (it would be written
    /// as infinity) or a normal non-zero value below its smallest subnormal (written as 0)
    /// fails the save with [`SaveError::Cast`] naming the tensor and the value, and nothing is
    /// written; see [`allow_lossy_narrowing`](Self::allow_lossy_narrowing). Rounding is not
    /// lossy narrowing. NaNs are written with their payloads.
    ///
    /// ```
    /// use patcher_burn::SaveOptions;
    /// use patcher_core::DType;
    /// let options = SaveOptions::default().float_dtype(DType::BF16);
    /// assert_eq!(options.float_dtype_choice(), Some(DType::BF16));
    /// ```
    pub fn float_dtype(mut self, dtype: DType) -> Self {
        self.float_dtype = Some(dtype);
        self
    }

    /// The dtype set with [`float_dtype`](Self::float_dtype), if any.
    pub fn float_dtype_choice(&self) -> Option<DType> {
        self.float_dtype
    }

    /// Writes only the parameters whose PyTorch name (the model's, before the reversed
    /// conversions) matches one of `patterns` (key patterns, as [`LoadOptions::ignore_missing`]
    /// takes), e.g. a LoRA adapter's. Default: every parameter.
    ///
    /// [`LoadOptions::ignore_missing`]: crate::LoadOptions::ignore_missing
    pub fn only_params(mut self, patterns: impl IntoPatterns) -> Self {
        self.only_params = patterns.into_patterns();
        self
    }

    /// Leaves out the parameters whose PyTorch name matches one of `patterns`, e.g. a LoRA
    /// adapter's, to write the base checkpoint as it was loaded. The load-back check then
    /// expects them missing. Default: none left out.
    ///
    /// ```
    /// use patcher_burn::SaveOptions;
    /// let options = SaveOptions::default().skip_params([r"\.lora_[ab]\.weight$"]);
    /// assert_eq!(options.skipped_params(), [r"\.lora_[ab]\.weight$"]);
    /// ```
    pub fn skip_params(mut self, patterns: impl IntoPatterns) -> Self {
        self.skip_params = patterns.into_patterns();
        self
    }

    /// The patterns set with [`only_params`](Self::only_params).
    pub fn only_params_choice(&self) -> &[String] {
        &self.only_params
    }

    /// The patterns set with [`skip_params`](Self::skip_params).
    pub fn skipped_params(&self) -> &[String] {
        &self.skip_params
    }

    /// Lets [`float_dtype`](Self::float_dtype) write values beyond its range as infinities and
    /// values below its smallest subnormal as zeros (as PyTorch's `Tensor.to(dtype)` does)
    /// instead of failing the save.
    ///
    /// ```
    /// use patcher_burn::SaveOptions;
    /// use patcher_core::{DType, LossyNarrowing};
    /// let options = SaveOptions::default().float_dtype(DType::F16);
    /// assert_eq!(options.lossy_narrowing_choice(), LossyNarrowing::Refuse);
    /// let lossy = options.allow_lossy_narrowing();
    /// assert_eq!(lossy.lossy_narrowing_choice(), LossyNarrowing::Allow);
    /// ```
    pub fn allow_lossy_narrowing(mut self) -> Self {
        self.narrowing = LossyNarrowing::Allow;
        self
    }

    /// Whether lossy narrowing is refused (the default) or allowed.
    pub fn lossy_narrowing_choice(&self) -> LossyNarrowing {
        self.narrowing
    }
}

/// Saves a loaded model in the layout it was loaded from: `loaded.conversions` run in reverse
/// (a converter that ran backwards on load runs forward again), with its base model prefix and
/// the PyTorch layouts of its module types (`loaded.layouts`).
///
/// `path` is a `.safetensors` file, or a folder that gets `model.safetensors` (or shards and
/// `model.safetensors.index.json`, see [`SaveOptions::max_shard_size`]). Returns the files
/// written.
///
/// Nothing is written unless the file would load back into the same model bit for bit through
/// the same conversions and hold the keys and shapes that were loaded
/// ([`SaveError::Mismatch`] otherwise). The save is one commit
/// ([`patcher_core::save_checkpoint`]): killed at any instant, out of disk, or raced by another
/// save into the folder (which fails with [`patcher_core::CheckpointError::FolderBusy`]), it
/// leaves the whole old checkpoint or the whole new one.
pub fn save_pretrained<B: Backend, M: Module<B>>(
    loaded: &Loaded<M>,
    path: impl AsRef<Path>,
) -> Result<Vec<PathBuf>, SaveError> {
    save_pretrained_with(loaded, path, &SaveOptions::default())
}

/// [`save_pretrained`] with options (shards).
pub fn save_pretrained_with<B: Backend, M: Module<B>>(
    loaded: &Loaded<M>,
    path: impl AsRef<Path>,
    options: &SaveOptions,
) -> Result<Vec<PathBuf>, SaveError> {
    refuse_peer_slices(loaded.tensor_parallel.as_ref())?;
    let layouts = options.torch_layouts_choice().unwrap_or(&loaded.layouts);
    save_parts(
        &loaded.model,
        path.as_ref(),
        &loaded.conversions,
        loaded.base_model_prefix.as_deref(),
        &loaded.source_layout,
        layouts,
        options,
    )
}

/// Saves `model` through the reverse of `conversions` (for a model that was not loaded by this
/// library, or with conversions of your own). Verified like [`save_pretrained`], except that
/// without a loaded layout only the load back is checked. The parameters are laid out with
/// Burn's layers' PyTorch layouts unless [`SaveOptions::torch_layouts`] says otherwise.
pub fn save_model<B: Backend, M: Module<B>>(
    model: &M,
    path: impl AsRef<Path>,
    conversions: &[WeightTransform],
    base_model_prefix: Option<&str>,
    options: &SaveOptions,
) -> Result<Vec<PathBuf>, SaveError> {
    let defaults = TorchLayouts::default();
    let layouts = options.torch_layouts_choice().unwrap_or(&defaults);
    save_parts(
        model,
        path.as_ref(),
        conversions,
        base_model_prefix,
        &[],
        layouts,
        options,
    )
}

/// A model loaded as one peer of several holds slices: it cannot be saved on its own.
pub(crate) fn refuse_peer_slices(plan: Option<&TensorParallel>) -> Result<(), SaveError> {
    match plan.filter(|tp| tp.world() > 1) {
        Some(tp) => Err(SaveError::TensorParallel { rank: tp.rank(), world: tp.world() }),
        None => Ok(()),
    }
}

/// Saves `model` through the reverse of `conversions`, checked against `source_layout` (the
/// keys a load read; empty when there was no load): what every save runs.
pub(crate) fn save_parts<B: Backend, M: Module<B>>(
    model: &M,
    path: &Path,
    conversions: &[WeightTransform],
    base_model_prefix: Option<&str>,
    source_layout: &[(String, TensorMeta)],
    layouts: &TorchLayouts,
    options: &SaveOptions,
) -> Result<Vec<PathBuf>, SaveError> {
    let filter = filter::ParamFilter::new(options)?;
    let params = collect::torch_params(model, layouts, &filter)?;
    let layout = SavedLayout { conversions, base_model_prefix, source_layout };
    save_params(params, path, &layout, options)
}

/// What a save writes back through: the conversions to reverse, the base model prefix and the
/// keys a load read (empty when there was no load).
pub(crate) struct SavedLayout<'a> {
    pub(crate) conversions: &'a [WeightTransform],
    pub(crate) base_model_prefix: Option<&'a str>,
    pub(crate) source_layout: &'a [(String, TensorMeta)],
}

/// Saves `params` (PyTorch names and layout) through the reverse of `layout`'s conversions,
/// verified against what was loaded.
pub(crate) fn save_params(
    params: Vec<(String, HostTensor<'static>)>,
    path: &Path,
    layout: &SavedLayout<'_>,
    options: &SaveOptions,
) -> Result<Vec<PathBuf>, SaveError> {
    let SavedLayout { conversions, base_model_prefix, source_layout } = *layout;
    let _save = tracing::info_span!("save", path = %path.display()).entered();
    let started = Instant::now();
    let plan_options = PlanOptions::default()
        .base_model_prefix(base_model_prefix.unwrap_or_default())
        .source_keys(source_layout.iter().map(|(k, _)| k.clone()));
    let mut collected = collect::collect(params, conversions, &plan_options)?;
    tracing::debug!(
        tensors = collected.tensors.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "collected"
    );
    let loaded: HashMap<&str, DType> = source_layout
        .iter()
        .map(|(key, meta)| (key.as_str(), meta.dtype))
        .collect();
    collected.tensors = match options.float_dtype {
        Some(dtype) if !dtype.is_float() => {
            return Err(SaveError::Unsupported {
                key: dtype.as_str().to_string(),
                message: "SaveOptions::float_dtype takes a float dtype (F32, F16, BF16, F64)"
                    .into(),
            })
        }
        Some(dtype) => cast_floats(collected.tensors, |_| Some(dtype), options.narrowing)?,
        None => cast_floats(
            collected.tensors,
            |key| loaded.get(key).copied(),
            options.narrowing,
        )?,
    };
    let written: Vec<(String, TensorMeta)> = collected
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.meta()))
        .collect();
    let verifying = Instant::now();
    verify::verify(
        &written,
        &collected.params,
        conversions,
        &plan_options,
        source_layout,
        options.float_dtype.is_none(),
    )?;
    tracing::debug!(ms = verifying.elapsed().as_secs_f64() * 1e3, "verified");
    let file = files::target_file(path)?;
    let bytes: usize = written.iter().map(|(_, meta)| meta.num_bytes()).sum();
    let shards = patcher_core::shard_by_size(collected.tensors, options.max_shard_size);
    let writing = Instant::now();
    let files = files::write(&file, shards)?;
    tracing::info!(
        tensors = written.len(),
        bytes,
        files = files.len(),
        write_ms = writing.elapsed().as_secs_f64() * 1e3,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "saved"
    );
    Ok(files)
}

/// The float tensors of `tensors` cast to the float dtype `dtype_of` gives for their key (left
/// as they are where it gives none, or a dtype that is not a float), lossy narrowing refused or
/// allowed.
fn cast_floats(
    tensors: Vec<(String, HostTensor<'static>)>,
    dtype_of: impl Fn(&str) -> Option<DType>,
    narrowing: LossyNarrowing,
) -> Result<Vec<(String, HostTensor<'static>)>, SaveError> {
    tensors
        .into_iter()
        .map(|(key, tensor)| {
            let dtype = match dtype_of(&key) {
                Some(dtype) if dtype.is_float() && tensor.dtype.is_float() => dtype,
                _ => return Ok((key, tensor)),
            };
            match tensor.cast_with(dtype, narrowing) {
                Ok(cast) => Ok((key, cast)),
                Err(source) => Err(SaveError::Cast { key, source }),
            }
        })
        .collect()
}
