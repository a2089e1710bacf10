//! How a load runs: strictness, threads, bytes in flight, progress.

use std::fmt;
use std::sync::Arc;

use burn::tensor::quantization::QuantScheme;
use patcher_core::plan::TensorParallel;

use super::params::LinearLayout;
use super::quantize::{Quantization, QuantizeTargets};

/// Where a load stands, given to the progress callback after each conversion group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    /// Parameters written so far.
    pub params_done: usize,
    /// Parameters the load writes.
    pub params_total: usize,
    /// Checkpoint bytes read so far.
    pub bytes_done: u64,
    /// Checkpoint bytes the load reads.
    pub bytes_total: u64,
}

type ProgressFn = Arc<dyn Fn(&LoadProgress) + Send + Sync>;

/// The most threads a load runs on: [`LoadOptions::threads`] clamps to it. Well above what an
/// I/O-bound load gains from (transformers measured 4 as fastest), low enough that starting
/// them all costs milliseconds.
pub const MAX_LOAD_THREADS: usize = 64;

/// Options of a load. The default is strict, 4 threads and 512 MiB in flight.
///
/// ```
/// use patcher_burn::LoadOptions;
///
/// let options = LoadOptions::default()
///     .partial()
///     .threads(2)
///     .on_progress(|p| eprintln!("{}/{} parameters", p.params_done, p.params_total));
/// assert!(!options.is_strict());
/// ```
#[derive(Clone)]
pub struct LoadOptions {
    strict: bool,
    threads: usize,
    max_bytes_in_flight: u64,
    progress: Option<ProgressFn>,
    ignore_unexpected: Vec<String>,
    ignore_missing: Vec<String>,
    check_finite: bool,
    linear_layout: LinearLayout,
    quantization: Option<Quantization>,
    tensor_parallel: Option<TensorParallel>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            strict: true,
            // transformers measured 4 loader threads as fastest (PR #42324): loading is I/O bound.
            threads: 4,
            max_bytes_in_flight: 512 << 20,
            progress: None,
            ignore_unexpected: Vec::new(),
            ignore_missing: Vec::new(),
            check_finite: false,
            linear_layout: LinearLayout::default(),
            quantization: None,
            tensor_parallel: None,
        }
    }
}

impl LoadOptions {
    /// Strict loading (the default): any missing parameter, unexpected key, shape mismatch or
    /// conversion error fails the load with the plan's report.
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    /// Partial loading: load what fits and return the report with the model. Parameters that are
    /// not loaded keep their initial values.
    pub fn partial(mut self) -> Self {
        self.strict = false;
        self
    }

    /// Threads converting groups in parallel, clamped to `1..=`[`MAX_LOAD_THREADS`]: loading
    /// is bound by reads and uploads, not by cores, and every thread is started for each load
    /// (10,000 threads took over a minute to start on a tiny checkpoint).
    ///
    /// ```
    /// use patcher_burn::{LoadOptions, MAX_LOAD_THREADS};
    ///
    /// assert_eq!(LoadOptions::default().threads(10_000).thread_count(), MAX_LOAD_THREADS);
    /// assert_eq!(LoadOptions::default().threads(0).thread_count(), 1);
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.clamp(1, MAX_LOAD_THREADS);
        self
    }

    /// Upper bound of converted bytes held on the host before they are uploaded (a single group
    /// larger than the bound still loads, alone).
    pub fn max_bytes_in_flight(mut self, bytes: u64) -> Self {
        self.max_bytes_in_flight = bytes.max(1);
        self
    }

    /// Checkpoint keys that may be present without being parameters, as regexes searched
    /// anywhere in the key, in addition to the model's
    /// ([`PretrainedModel::keys_to_ignore_on_load_unexpected`](crate::PretrainedModel::keys_to_ignore_on_load_unexpected)).
    /// They are reported as ignored, never as unexpected; strictness stays on for everything
    /// else. An empty or invalid pattern fails the load with [`LoadError::Pattern`](crate::LoadError::Pattern).
    pub fn ignore_unexpected<S: Into<String>>(
        mut self,
        patterns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.ignore_unexpected
            .extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Parameters checkpoints need not hold (a LoRA adapter's `lora_a`/`lora_b`, say), as
    /// regexes searched anywhere in the parameter's checkpoint name. They keep their initial
    /// values and are reported under
    /// [`LoadReport::missing_ignored`](patcher_core::LoadReport::missing_ignored), never as
    /// missing; strictness stays on for everything else. An empty or invalid pattern fails the
    /// load with [`LoadError::Pattern`](crate::LoadError::Pattern).
    pub fn ignore_missing<S: Into<String>>(
        mut self,
        patterns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.ignore_missing
            .extend(patterns.into_iter().map(Into::into));
        self
    }

    /// How Linear weights are laid out in the loaded model (default
    /// [`LinearLayout::Contiguous`]: transposed during the load's one copy, the fastest layout
    /// for Burn's matmuls).
    pub fn linear_layout(mut self, layout: LinearLayout) -> Self {
        self.linear_layout = layout;
        self
    }

    /// Quantizes the weights of every `nn::Linear` with `scheme` as they are loaded: the
    /// full-precision model is never resident (only the bytes in flight are). The result is bit
    /// for bit what Burn's `quantize_weights` with `Calibration::MinMax` gives on those
    /// parameters after a full-precision load. A quantized model cannot be saved back to
    /// safetensors (the save refuses with an error); load it again in full precision to save.
    ///
    /// Not every scheme runs on every backend (Burn's `QuantScheme::default()` packs values in
    /// u32 words, which NdArray does not implement) nor fits every parameter (a block size
    /// must divide a parameter's width): such a load fails with
    /// [`LoadError::Quantize`](crate::LoadError::Quantize) naming the parameter and why, before
    /// anything is uploaded. [`backend_quant_scheme`](crate::backend_quant_scheme) is the
    /// backend's own 8-bit scheme.
    ///
    /// ```
    /// use burn::backend::NdArray;
    /// use burn::nn::LinearConfig;
    /// use burn::tensor::quantization::{QuantLevel, QuantScheme};
    /// use burn::tensor::DType as BurnDType;
    /// use patcher_burn::{backend_quant_scheme, LoadError, LoadOptions, Pretrained};
    /// use patcher_core::{save_safetensors, Checkpoint, HostTensor};
    ///
    /// // A checkpoint of one Linear (PyTorch layout: weight [out, in]).
    /// let dir = std::env::temp_dir().join(format!("quantize-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let file = dir.join("model.safetensors");
    /// let weight: Vec<f32> = (0..32 * 16).map(|i| (i % 7) as f32 - 3.0).collect();
    /// let bias = vec![0.5f32; 32];
    /// save_safetensors(&file, [
    ///     ("weight".to_string(), HostTensor::from_f32([32, 16], &weight)),
    ///     ("bias".to_string(), HostTensor::from_f32([32], &bias)),
    /// ], None)?;
    /// let checkpoint = Checkpoint::open(&file)?;
    /// let linear = LinearConfig::new(16, 32).init::<NdArray>(&Default::default());
    ///
    /// // The backend's 8-bit scheme loads (NdArray: one value per byte).
    /// let options = LoadOptions::default().quantize(backend_quant_scheme::<NdArray>());
    /// let loaded = Pretrained::from_checkpoint(&checkpoint).options(options).load_into(&linear)?;
    /// assert!(matches!(loaded.model.weight.val().dtype(), BurnDType::QFloat(_)));
    ///
    /// // Burn's packed default is refused on NdArray, as is a block that does not divide the
    /// // width (32): typed errors naming the parameter, and `linear` is untouched.
    /// for scheme in [
    ///     QuantScheme::default(),
    ///     backend_quant_scheme::<NdArray>().with_level(QuantLevel::block([24])),
    /// ] {
    ///     let options = LoadOptions::default().quantize(scheme);
    ///     let pretrained = Pretrained::from_checkpoint(&checkpoint).options(options);
    ///     let err = pretrained.load_into(&linear).unwrap_err();
    ///     assert!(matches!(&err, LoadError::Quantize { key, .. } if key == "weight"), "{err}");
    /// }
    /// std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quantize(self, scheme: QuantScheme) -> Self {
        self.quantization(Quantization { scheme, targets: QuantizeTargets::LinearWeights })
    }

    /// Quantizes the parameters `quantization` selects as they are loaded (see
    /// [`LoadOptions::quantize`]). An invalid pattern fails the load with
    /// [`LoadError::Pattern`](crate::LoadError::Pattern).
    pub fn quantization(mut self, quantization: Quantization) -> Self {
        self.quantization = Some(quantization);
        self
    }

    /// Calls `callback` after each conversion group.
    pub fn on_progress(mut self, callback: impl Fn(&LoadProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// Shows an indicatif progress bar on stderr.
    #[cfg(feature = "progress")]
    pub fn progress_bar(self) -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} loading [{bar:40}] {bytes}/{total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        self.on_progress(move |p| {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
            if p.params_done == p.params_total {
                bar.finish_and_clear();
            }
        })
    }

    /// Counts NaN and infinite values in every checkpoint tensor the load reads, and lists the
    /// tensors that have some in [`Loaded::non_finite`](crate::Loaded::non_finite) (the load
    /// itself goes on: such weights are loaded as they are). Off by default; the counting runs
    /// on the host bytes in the loader's threads, one read pass per tensor (see
    /// `docs/benchmarks.md` for its cost).
    pub fn check_finite(mut self) -> Self {
        self.check_finite = true;
        self
    }

    /// Whether [`check_finite`](Self::check_finite) is on.
    pub fn checks_finite(&self) -> bool {
        self.check_finite
    }

    /// Loads one peer's part of a tensor-parallel model: the model is built with this peer's
    /// local shapes (a family's `tensor_parallel` config gives them), the plan checks the
    /// checkpoint against the full shapes, and each split parameter gets this peer's slice,
    /// read alone from the file when it is a checkpoint tensor as it is (rows of a colwise
    /// weight are one contiguous read). Conversions that cross the split dimension (q, k and v
    /// concatenated) run on the full tensors, then the result is sliced.
    pub fn tensor_parallel(mut self, plan: TensorParallel) -> Self {
        self.tensor_parallel = Some(plan);
        self
    }

    /// The tensor-parallel plan, if [`tensor_parallel`](Self::tensor_parallel) set one.
    pub fn tensor_parallel_plan(&self) -> Option<&TensorParallel> {
        self.tensor_parallel.as_ref()
    }

    /// Whether loading is strict.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    pub(crate) fn ignore_patterns(&self) -> &[String] {
        &self.ignore_unexpected
    }

    pub(crate) fn ignore_missing_patterns(&self) -> &[String] {
        &self.ignore_missing
    }

    pub(crate) fn linear_layout_choice(&self) -> LinearLayout {
        self.linear_layout
    }

    pub(crate) fn quantization_choice(&self) -> Option<&Quantization> {
        self.quantization.as_ref()
    }

    /// Threads a load runs on (see [`threads`](Self::threads)).
    pub fn thread_count(&self) -> usize {
        self.threads
    }

    pub(crate) fn bytes_in_flight(&self) -> u64 {
        self.max_bytes_in_flight
    }

    pub(crate) fn report(&self, progress: &LoadProgress) {
        if let Some(callback) = &self.progress {
            callback(progress);
        }
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("strict", &self.strict)
            .field("threads", &self.threads)
            .field("max_bytes_in_flight", &self.max_bytes_in_flight)
            .field("progress", &self.progress.is_some())
            .field("ignore_unexpected", &self.ignore_unexpected)
            .field("ignore_missing", &self.ignore_missing)
            .field("check_finite", &self.check_finite)
            .field("linear_layout", &self.linear_layout)
            .field("quantization", &self.quantization)
            .field("tensor_parallel", &self.tensor_parallel)
            .finish()
    }
}
