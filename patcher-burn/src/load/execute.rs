//! Runs a load plan: reads each group's sources from the checkpoint, casts them to the model's
//! dtype, runs the ops, lays the results out for Burn, and hands them over in bounded waves.
//!
//! A group that only renames a tensor is read straight into the parameter's buffer
//! ([`super::direct`]), a merge chain straight into its place in the merged parameter
//! ([`super::gather`]); other groups read their sources into owned buffers and run their ops.
//! Groups of a wave convert in parallel (rayon, a few threads: loading is I/O bound); a wave
//! holds at most `max_bytes_in_flight` of checkpoint bytes (one larger group goes alone), and
//! its tensors are uploaded before the next wave is read, so the host never holds the whole
//! converted model. Reads go through the page cache with `pread`, which is not the process'
//! memory: nothing of the file stays resident once read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use burn::tensor::quantization::QuantScheme;
use burn::tensor::{Element, TensorData};
use patcher_core::plan::{PlannedGroup, PlannedTarget, ShardSlice};
use patcher_core::{Checkpoint, DType, Groups, HostTensor, TensorMeta};
use rayon::prelude::*;

use super::direct::{read_transposed, read_values, single_source};
use super::error::LoadError;
use super::finite::{count_non_finite, NonFiniteCount};
use super::gather::{source_slices, MergeChain};
use super::host::{cast_for, to_tensor_data, transposes};
use super::layout::Layout;
use super::options::{LoadOptions, LoadProgress};
use super::params::{LinearLayout, ParamInfo, ParamKind};
use super::quantize::QuantizeSelector;
use super::slice::{read_slice, read_slice_into};

/// A converted parameter: its data, the layout step still to apply when it is put in the model
/// (a transposed view for [`LinearLayout::TransposedView`]), and the scheme to quantize it with
/// once uploaded, if any.
pub(crate) type Converted = (TensorData, Layout, Option<QuantScheme>);

/// Converted parameters of one wave, by Burn path.
pub(crate) type Wave = HashMap<String, Converted>;

/// What the executor needs to convert groups.
pub(crate) struct Executor<'a> {
    pub(crate) checkpoint: &'a Checkpoint,
    /// The model's parameters by PyTorch name.
    pub(crate) params: HashMap<&'a str, &'a ParamInfo>,
    pub(crate) float: DType,
    /// NaN/Inf counts per checkpoint tensor, when [`LoadOptions::check_finite`] is on.
    pub(crate) non_finite: Option<Mutex<Vec<NonFiniteCount>>>,
    /// How Linear weights are laid out.
    pub(crate) linear_layout: LinearLayout,
    /// Which parameters are quantized as they are loaded.
    pub(crate) quantize: Option<QuantizeSelector>,
    /// Checkpoint bytes read so far.
    pub(crate) bytes_read: AtomicU64,
}

impl Executor<'_> {
    fn group_bytes(&self, group: &PlannedGroup) -> u64 {
        let keys = group.sources.iter().flat_map(|(_, keys)| keys);
        keys.filter_map(|key| self.checkpoint.meta(key))
            .map(|meta| meta.num_bytes() as u64)
            .sum()
    }

    fn convert(&self, group: &PlannedGroup) -> Result<Vec<(String, Converted)>, LoadError> {
        // Every written target of a group is of one kind in practice (a float op chain); the
        // first decides how the sources are cast.
        let kind = group
            .ready_targets()
            .find_map(|t| self.params.get(t.key.as_str()))
            .map_or(ParamKind::Float, |p| p.kind);
        if let Some((key, target)) = single_source(group) {
            if let Some(shard) = &target.shard {
                return Ok(vec![self.read_shard(key, target, shard, kind)?]);
            }
            if let Some(converted) = self.read_direct(key, target)? {
                return Ok(vec![converted]);
            }
        }
        if let Some(converted) = self.read_merged(group, kind)? {
            return Ok(vec![converted]);
        }
        let mut inputs = Groups::new();
        for (pattern, keys) in group.sources.iter() {
            let mut tensors = Vec::with_capacity(keys.len());
            for key in keys {
                let tensor = self.checkpoint.get(key)?.read()?;
                self.count_read(tensor.num_bytes());
                self.count_non_finite(key, &tensor);
                tensors.push(cast_for(tensor, key, kind, self.float)?);
            }
            inputs.push(pattern, tensors);
        }
        let outputs = group
            .execute(inputs)
            .map_err(LoadError::converting(group))?;
        let converted = outputs
            .into_iter()
            .map(|(key, tensor)| {
                // A tensor-parallel target, sliced after the ops (they may cross the split).
                let target = group.targets.iter().find(|t| t.key == key);
                match target.and_then(|t| t.shard.as_ref()) {
                    Some(shard) => self.hand_over(&key, shard.take(&tensor)),
                    None => self.hand_over(&key, tensor),
                }
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        Ok(converted)
    }

    /// This peer's part of checkpoint tensor `key` for `target` (a renamed tensor, no ops): only
    /// its bytes are read ([`read_slice`]). NaN/Inf counts are of the part read.
    fn read_shard(
        &self,
        key: &str,
        target: &PlannedTarget,
        shard: &ShardSlice,
        kind: ParamKind,
    ) -> Result<(String, Converted), LoadError> {
        let (part, read) = read_slice(&self.checkpoint.get(key)?, shard)?;
        self.count_read(read);
        self.count_non_finite(key, &part);
        self.hand_over(&target.key, cast_for(part, key, kind, self.float)?)
    }

    /// Converted `tensor` laid out for parameter `key` (PyTorch name), by Burn path.
    fn hand_over(
        &self,
        key: &str,
        tensor: HostTensor<'_>,
    ) -> Result<(String, Converted), LoadError> {
        let param = self.param(key)?;
        let (data, layout) = to_tensor_data(tensor, param, self.linear_layout)?;
        let scheme = self.scheme_for(param);
        Ok((param.burn_path.clone(), (data, layout, scheme)))
    }

    fn count_read(&self, bytes: usize) {
        self.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The target of a merge chain ([`MergeChain`]) with every source read straight into its
    /// place (a tensor-parallel peer's part: each source's part of it, [`source_slices`]);
    /// `None` leaves the group to the general path.
    fn read_merged(
        &self,
        group: &PlannedGroup,
        kind: ParamKind,
    ) -> Result<Option<(String, Converted)>, LoadError> {
        let Some(metas) = self
            .source_metas(group)
            .filter(|_| kind == ParamKind::Float)
        else {
            return Ok(None);
        };
        let Some((slices, metas)) = source_slices(group, metas) else {
            return Ok(None);
        };
        let Some(chain) = MergeChain::plan(group, &metas, self.float) else {
            return Ok(None);
        };
        // `plan` found every source pattern with the same number of keys.
        let keys: Vec<&[String]> = group
            .source_patterns
            .iter()
            .map(|pattern| group.sources.get(pattern).unwrap_or_default())
            .collect();
        let read = |k: usize, e: usize, dst: &mut [u8]| {
            self.read_source(&keys[k][e], slices[k].as_ref(), self.float, dst)
        };
        let (key, data) = chain.gather(&read)?;
        let param = self.param(&key)?;
        let scheme = self.scheme_for(param);
        Ok(Some((
            param.burn_path.clone(),
            (data, param.layout, scheme),
        )))
    }

    /// Dtype and shape of every source of `group` (all are in the checkpoint: the plan was made
    /// from its keys).
    fn source_metas(&self, group: &PlannedGroup) -> Option<Groups<TensorMeta>> {
        let mut metas = Groups::new();
        for (pattern, keys) in group.sources.iter() {
            let list = keys.iter().map(|key| self.checkpoint.meta(key));
            metas.push(pattern, list.collect::<Option<Vec<_>>>()?);
        }
        Some(metas)
    }

    /// Target `target` read straight from checkpoint tensor `key` into the parameter's buffer,
    /// when the parameter stores its values as they are (or cast to the model's float); `None`
    /// leaves the group to the general path (which also reports what does not fit).
    fn read_direct(
        &self,
        key: &str,
        target: &PlannedTarget,
    ) -> Result<Option<(String, Converted)>, LoadError> {
        let Some(&param) = self.params.get(target.key.as_str()) else {
            return Ok(None);
        };
        let tensor = self.checkpoint.get(key)?;
        if tensor.shape() != target.meta.shape.as_slice() {
            return Ok(None);
        }
        // The dtype of the parameter's buffer (what `to_tensor_data` makes of the tensor).
        let stored = match (param.kind, tensor.dtype()) {
            (ParamKind::Float, dtype) if dtype.is_float() => self.float,
            (ParamKind::Int, dtype @ (DType::I64 | DType::I32)) => dtype,
            _ => return Ok(None),
        };
        let shape = tensor.shape();
        let (data, layout) = if transposes(param, self.linear_layout, shape) {
            // Transposed out of a strip buffer: only without a cast (else the general path).
            if tensor.dtype() != stored {
                return Ok(None);
            }
            let (rows, cols) = (shape[0], shape[1]);
            let data = match stored {
                DType::F32 => self.transposed::<f32>(key, &tensor, rows, cols)?,
                DType::F16 => self.transposed::<half::f16>(key, &tensor, rows, cols)?,
                DType::BF16 => self.transposed::<half::bf16>(key, &tensor, rows, cols)?,
                DType::F64 => self.transposed::<f64>(key, &tensor, rows, cols)?,
                _ => return Ok(None),
            };
            (data, Layout::Same)
        } else {
            let data = match stored {
                DType::F32 => self.read_typed::<f32>(key, shape, stored)?,
                DType::F16 => self.read_typed::<half::f16>(key, shape, stored)?,
                DType::BF16 => self.read_typed::<half::bf16>(key, shape, stored)?,
                DType::F64 => self.read_typed::<f64>(key, shape, stored)?,
                DType::I64 => self.read_typed::<i64>(key, shape, stored)?,
                DType::I32 => self.read_typed::<i32>(key, shape, stored)?,
                _ => return Ok(None),
            };
            (data, param.layout)
        };
        let scheme = self.scheme_for(param);
        Ok(Some((param.burn_path.clone(), (data, layout, scheme))))
    }

    /// Tensor `key` of `shape` as Burn data of `T` (whose dtype is `stored`), read in one pass.
    fn read_typed<T: Element + bytemuck::Pod>(
        &self,
        key: &str,
        shape: &[usize],
        stored: DType,
    ) -> Result<TensorData, LoadError> {
        let len = shape.iter().product();
        let values: Vec<T> = read_values(len, |dst| self.read_source(key, None, stored, dst))?;
        Ok(TensorData::new(values, shape.to_vec()))
    }

    /// The `rows x cols` tensor `key` transposed to Burn's `[cols, rows]` as it is read.
    fn transposed<T: Element + bytemuck::Pod>(
        &self,
        key: &str,
        tensor: &patcher_core::TensorRef<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<TensorData, LoadError> {
        let values: Vec<T> = read_transposed(tensor, rows, cols)?;
        self.count_read(tensor.num_bytes());
        // The same values in another order: counted on the output.
        if self.non_finite.is_some() {
            let bytes: &[u8] = bytemuck::cast_slice(&values);
            self.count_non_finite(key, &HostTensor::new(tensor.dtype(), [values.len()], bytes));
        }
        Ok(TensorData::new(values, vec![cols, rows]))
    }

    /// Reads checkpoint tensor `key` (or its part `slice`) into `dst` as `dtype` (its own dtype,
    /// or the model's float for a float tensor: then cast on the way), counting its NaN and
    /// infinite values when [`LoadOptions::check_finite`] is on. `dst` is the size of what is
    /// read in `dtype`.
    fn read_source(
        &self,
        key: &str,
        slice: Option<&ShardSlice>,
        dtype: DType,
        dst: &mut [u8],
    ) -> Result<(), LoadError> {
        let tensor = self.checkpoint.get(key)?;
        if tensor.dtype() == dtype {
            let read = match slice {
                Some(slice) => read_slice_into(&tensor, slice, dst)?,
                None => {
                    tensor.read_into(dst)?;
                    dst.len()
                }
            };
            self.count_read(read);
            if self.non_finite.is_some() {
                let shape =
                    slice.map_or(tensor.shape().to_vec(), |s| s.local_shape(tensor.shape()));
                self.count_non_finite(key, &HostTensor::new(dtype, shape, &dst[..]));
            }
            return Ok(());
        }
        let (host, read) = match slice {
            Some(slice) => read_slice(&tensor, slice)?,
            None => (tensor.read()?, tensor.num_bytes()),
        };
        self.count_read(read);
        self.count_non_finite(key, &host);
        let cast = host
            .cast(dtype)
            .map_err(|source| LoadError::Cast { key: key.to_string(), source })?;
        if cast.bytes.len() != dst.len() {
            return Err(LoadError::Unsupported {
                key: key.to_string(),
                message: format!(
                    "{} bytes read as {dtype} for a buffer of {} bytes",
                    cast.bytes.len(),
                    dst.len()
                ),
            });
        }
        dst.copy_from_slice(&cast.bytes);
        Ok(())
    }

    fn count_non_finite(&self, key: &str, tensor: &HostTensor<'_>) {
        let Some(found) = &self.non_finite else {
            return;
        };
        let (nan, inf) = count_non_finite(tensor);
        if nan + inf > 0 {
            let count = NonFiniteCount { key: key.to_string(), nan, inf };
            found.lock().unwrap_or_else(|e| e.into_inner()).push(count);
        }
    }

    fn scheme_for(&self, param: &ParamInfo) -> Option<QuantScheme> {
        self.quantize.as_ref().and_then(|q| q.scheme_for(param))
    }

    fn param(&self, key: &str) -> Result<&ParamInfo, LoadError> {
        self.params
            .get(key)
            .copied()
            .ok_or_else(|| LoadError::Unsupported {
                key: key.to_string(),
                message: "the plan wrote a parameter the model does not list".into(),
            })
    }

    /// Converts `groups` wave by wave, folding each wave into `state` with `apply` (which uploads
    /// it into the model), and returns the final state.
    pub(crate) fn run<S>(
        &self,
        groups: &[PlannedGroup],
        options: &LoadOptions,
        mut state: S,
        apply: impl Fn(S, Wave) -> S,
    ) -> Result<S, LoadError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.thread_count())
            .build()
            .map_err(|e| LoadError::Unsupported {
                key: String::new(),
                message: format!("could not start the loader threads: {e}"),
            })?;
        let sizes: Vec<u64> = groups.iter().map(|g| self.group_bytes(g)).collect();
        let mut progress = LoadProgress {
            params_done: 0,
            params_total: groups.iter().map(|g| g.ready_targets().count()).sum(),
            bytes_done: 0,
            bytes_total: sizes.iter().sum(),
        };
        let started = Instant::now();
        let mut start = 0;
        while start < groups.len() {
            let mut end = start + 1;
            let mut bytes = sizes[start];
            while end < groups.len() && bytes + sizes[end] <= options.bytes_in_flight() {
                bytes += sizes[end];
                end += 1;
            }
            let wave = &groups[start..end];
            let reading = Instant::now();
            let converted: Vec<_> =
                pool.install(|| wave.par_iter().map(|g| self.convert(g)).collect());
            let mut tensors = Wave::new();
            for result in converted {
                let outputs = result?;
                progress.params_done += outputs.len();
                tensors.extend(outputs);
            }
            let (params, read_ms) = (tensors.len(), reading.elapsed().as_secs_f64() * 1e3);
            let uploading = Instant::now();
            state = apply(state, tensors);
            tracing::debug!(
                groups = wave.len(),
                params,
                bytes,
                read_convert_ms = read_ms,
                upload_ms = uploading.elapsed().as_secs_f64() * 1e3,
                quantized = self.quantize.is_some(),
                "wave"
            );
            if self.quantize.is_some() {
                release_freed_memory();
            }
            progress.bytes_done += bytes;
            options.report(&progress);
            start = end;
        }
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            params = progress.params_done,
            bytes = progress.bytes_total,
            threads = options.thread_count(),
            ms = seconds * 1e3,
            gb_per_s = progress.bytes_total as f64 / 1e9 / seconds.max(1e-9),
            "loaded"
        );
        Ok(state)
    }
}

/// Hands the allocator's free memory back to the OS. After a wave of a quantized load, its
/// full-precision buffers are freed, but glibc keeps freed blocks below its (adaptive, up to
/// 32 MiB) mmap threshold in its arenas, resident. Measured on the load benchmark's 8-bit load
/// (64 MiB in flight): peak RSS added 285 MB without this, 254 MB with it, for a 178.6 MB model.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free memory of the allocator's arenas to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}
