//! Runs a load plan: reads each group's sources from the memory map, casts them to the model's
//! dtype, runs the ops, lays the results out for Burn, and hands them over in bounded waves.
//!
//! Groups of a wave convert in parallel (rayon, a few threads: loading is I/O bound); a wave
//! holds at most `max_bytes_in_flight` of checkpoint bytes (one larger group goes alone), and
//! its tensors are uploaded before the next wave is read. Each group releases its mapped pages
//! as soon as its outputs own their bytes, so the host never holds the whole converted model,
//! nor the whole mapped file.

use std::collections::HashMap;
use std::sync::Mutex;

use burn::tensor::quantization::QuantScheme;
use burn::tensor::TensorData;
use patcher_core::plan::PlannedGroup;
use patcher_core::{Checkpoint, DType, Groups, HostTensor};
use rayon::prelude::*;

use super::error::LoadError;
use super::finite::{count_non_finite, NonFiniteCount};
use super::gather::merge_chain;
use super::host::{cast_for, to_tensor_data};
use super::layout::Layout;
use super::options::{LoadOptions, LoadProgress};
use super::params::{LinearLayout, ParamInfo, ParamKind};
use super::quantize::QuantizeSelector;

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
        let mut inputs = Groups::new();
        for (pattern, keys) in group.sources.iter() {
            let mut tensors = Vec::with_capacity(keys.len());
            for key in keys {
                let tensor = self.checkpoint.get(key)?.host();
                self.count_non_finite(key, &tensor);
                tensors.push(cast_for(tensor, key, kind, self.float)?);
            }
            inputs.push(pattern, tensors);
        }
        // Merge chains are gathered in one copy, releasing each source as it goes.
        let release = |key: &str| self.checkpoint.release(key);
        if let Some((key, data)) = merge_chain(group, &inputs, &release) {
            let param = self.param(&key)?;
            let scheme = self.scheme_for(param);
            return Ok(vec![(
                param.burn_path.clone(),
                (data, param.layout, scheme),
            )]);
        }
        let outputs = group
            .execute(inputs)
            .map_err(LoadError::converting(group))?;
        let converted = outputs
            .into_iter()
            .map(|(key, tensor)| {
                let param = self.param(&key)?;
                let (data, layout) = to_tensor_data(tensor, param, self.linear_layout)?;
                let scheme = self.scheme_for(param);
                Ok((param.burn_path.clone(), (data, layout, scheme)))
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        self.release_sources(group);
        Ok(converted)
    }

    fn count_non_finite(&self, key: &str, tensor: &HostTensor<'_>) {
        let Some(found) = &self.non_finite else {
            return;
        };
        let (nan, inf) = count_non_finite(tensor);
        // The count touched every page of the tensor; let them go until the conversion reads
        // them again (from the page cache), so a group's sources are not all resident at once.
        self.checkpoint.release(key);
        if nan + inf > 0 {
            let count = NonFiniteCount {
                key: key.to_string(),
                nan,
                inf,
            };
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

    /// Once a group's outputs own their bytes, its sources' mapped pages can leave the resident
    /// set before the next group is read.
    fn release_sources(&self, group: &PlannedGroup) {
        for key in group.sources.iter().flat_map(|(_, keys)| keys) {
            self.checkpoint.release(key);
        }
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
        let mut start = 0;
        while start < groups.len() {
            let mut end = start + 1;
            let mut bytes = sizes[start];
            while end < groups.len() && bytes + sizes[end] <= options.bytes_in_flight() {
                bytes += sizes[end];
                end += 1;
            }
            let wave = &groups[start..end];
            let converted: Vec<_> =
                pool.install(|| wave.par_iter().map(|g| self.convert(g)).collect());
            let mut tensors = Wave::new();
            for result in converted {
                let outputs = result?;
                progress.params_done += outputs.len();
                tensors.extend(outputs);
            }
            state = apply(state, tensors);
            if self.quantize.is_some() {
                release_freed_memory();
            }
            progress.bytes_done += bytes;
            options.report(&progress);
            start = end;
        }
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
