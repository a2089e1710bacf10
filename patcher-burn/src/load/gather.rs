//! A fast path for the expert-merging chains of transformers' MoE tables: `MergeModulelist(0)`
//! alone, or followed by `Concatenate(d)`.
//!
//! Their output is whole slabs of the source tensors in a fixed order, so each source is read
//! from the checkpoint straight into its place in the parameter's typed buffer: one write per
//! byte (the kernel's copy out of the page cache), where running the ops writes once per op and
//! the hand-over to Burn once more. Anything outside this exact shape of chain (or with an
//! unexpected shape) gives no [`MergeChain`] and takes the general path, which also owns the
//! errors.

use burn::tensor::{Element, TensorData};
use patcher_core::ops::{Concatenate, MergeModulelist};
use patcher_core::plan::{PlannedGroup, ShardSlice, TargetStatus};
use patcher_core::{ConversionOp, DType, Groups, TensorMeta};
use rayon::prelude::*;

use super::error::LoadError;

/// Fills its buffer with source `index` of source pattern `pattern` (in the group's declared
/// pattern order), as the model's float dtype: the whole tensor, `num_bytes` of its meta.
pub(crate) type ReadSource<'a> =
    dyn Fn(usize, usize, &mut [u8]) -> Result<(), LoadError> + Sync + 'a;

/// A group whose ops are a merge chain this path handles: where each source goes in the output.
pub(crate) struct MergeChain {
    /// The single target's key.
    key: String,
    /// The model's float dtype, which every source is read as.
    dtype: DType,
    /// Sources per pattern (declared order), all of one shape.
    experts: usize,
    patterns: usize,
    slabs: Slabs,
}

impl MergeChain {
    /// The chain of `group`, if this path handles it; `metas` are the checkpoint's dtypes and
    /// shapes of the group's sources (floats of any dtype: they are read as `float`).
    pub(crate) fn plan(
        group: &PlannedGroup,
        metas: &Groups<TensorMeta>,
        float: DType,
    ) -> Option<Self> {
        let concat_dim = chain_concat_dim(group)?;
        if concat_dim.is_none() && metas.len() != 1 {
            return None;
        }
        let [target] = group.targets.as_slice() else {
            return None;
        };
        if target.status != TargetStatus::Ready {
            return None;
        }
        let lists: Vec<&[TensorMeta]> = group
            .source_patterns
            .iter()
            .map(|pattern| metas.get(pattern))
            .collect::<Option<_>>()?;
        let experts = lists.first()?.len();
        let uniform = lists.iter().all(|list| {
            list.len() == experts
                && list
                    .iter()
                    .all(|m| m.dtype.is_float() && m.shape == list[0].shape)
        });
        if experts == 0 || !uniform || !float.is_float() {
            return None;
        }
        let shapes: Vec<&[usize]> = lists.iter().map(|list| list[0].shape.as_slice()).collect();
        let slabs = Slabs::new(&shapes, experts, float.size_in_bytes(), concat_dim)?;
        // A tensor-parallel peer's part: `metas` are then the sources' parts.
        let shape = match &target.shard {
            Some(shard) => shard.local_shape(&target.meta.shape),
            None => target.meta.shape.clone(),
        };
        if slabs.shape != shape {
            return None;
        }
        Some(Self {
            key: target.key.clone(),
            dtype: float,
            experts,
            patterns: lists.len(),
            slabs,
        })
    }

    /// The target's key and its Burn data, every source read once by `read`.
    pub(crate) fn gather(&self, read: &ReadSource<'_>) -> Result<(String, TensorData), LoadError> {
        let data = match self.dtype {
            DType::F32 => self.gather_typed::<f32>(read),
            DType::F16 => self.gather_typed::<half::f16>(read),
            DType::BF16 => self.gather_typed::<half::bf16>(read),
            DType::F64 => self.gather_typed::<f64>(read),
            other => Err(LoadError::Unsupported {
                key: self.key.clone(),
                message: format!("a float parameter cannot hold {other} values"),
            }),
        }?;
        Ok((self.key.clone(), data))
    }

    /// Reads every source once into a zeroed buffer of `T` (a fresh zeroed allocation costs no
    /// write) and hands it to Burn as it is.
    ///
    /// The output is cut into contiguous regions, each filled from its own sources (one per
    /// source tensor when the patterns follow each other, one per expert otherwise), and the
    /// regions are read in parallel: a group can be a layer's whole expert weights (64 MB in
    /// the load benchmark), which one thread alone would read while the others wait.
    fn gather_typed<T: Element + bytemuck::Pod>(
        &self,
        read: &ReadSource<'_>,
    ) -> Result<TensorData, LoadError> {
        let slabs = &self.slabs;
        let total: usize = slabs.shape.iter().product();
        let mut values = vec![T::zeroed(); total];
        let out: &mut [u8] = bytemuck::cast_slice_mut(&mut values);
        if slabs.pattern_major {
            let units: Vec<(usize, usize)> = (0..self.patterns)
                .flat_map(|k| (0..self.experts).map(move |e| (k, e)))
                .collect();
            let sizes = std::iter::repeat_n(out.len() / units.len(), units.len());
            let regions = split_regions(out, sizes);
            regions
                .into_par_iter()
                .zip(units)
                .try_for_each(|(region, (k, e))| read(k, e, region))?;
        } else {
            let per_expert = slabs.outer * slabs.slab_bytes.iter().sum::<usize>();
            let sizes = std::iter::repeat_n(per_expert, self.experts);
            let regions = split_regions(out, sizes);
            regions
                .into_par_iter()
                .enumerate()
                .try_for_each(|(e, region)| slabs.fill_expert(e, region, read))?;
        }
        Ok(TensorData::new(values, slabs.shape.clone()))
    }
}

/// For a tensor-parallel peer's part of a merge chain's target, the part of each source pattern
/// that makes it, with the sources' metas cut to their parts: the output's dimension `d > 0`
/// is the sources' `d - 1`, so a slice of it is a slice of each source (of each pattern's own
/// block when the chain concatenates along `d`). `(no slices, metas)` for a target that is not
/// split; `None` when the part is not made of whole source slices this way (the experts'
/// dimension split, blocks that straddle two patterns): the general path then runs the ops and
/// slices their output.
pub(crate) fn source_slices(
    group: &PlannedGroup,
    metas: Groups<TensorMeta>,
) -> Option<(Vec<Option<ShardSlice>>, Groups<TensorMeta>)> {
    let patterns = group.source_patterns.len();
    let Some(shard) = group.targets.first().and_then(|t| t.shard.as_ref()) else {
        return Some((vec![None; patterns], metas));
    };
    let concat_dim = chain_concat_dim(group)?;
    let dim = shard.dim.checked_sub(1)?;
    let sizes: Vec<usize> = group
        .source_patterns
        .iter()
        .map(|pattern| Some(*metas.get(pattern)?.first()?.shape.get(dim)?))
        .collect::<Option<_>>()?;
    let slices: Vec<ShardSlice> = if concat_dim == Some(shard.dim) {
        // One range per pattern, inside that pattern's block.
        if shard.ranges.len() != patterns {
            return None;
        }
        let mut start = 0;
        let mut slices = Vec::with_capacity(patterns);
        for (range, size) in shard.ranges.iter().zip(&sizes) {
            if range.start < start || range.end > start + size {
                return None;
            }
            let local = range.start - start..range.end - start;
            slices.push(ShardSlice { dim, ranges: vec![local] });
            start += size;
        }
        slices
    } else {
        let fits = |size: &usize| shard.ranges.iter().all(|r| r.end <= *size);
        if !sizes.iter().all(fits) {
            return None;
        }
        vec![ShardSlice { dim, ranges: shard.ranges.clone() }; patterns]
    };
    let mut parts = Groups::new();
    for (pattern, list) in metas {
        let slice = &slices[group.source_patterns.iter().position(|p| *p == pattern)?];
        let list = list.into_iter().map(|meta| {
            let shape = slice.local_shape(&meta.shape);
            TensorMeta::new(meta.dtype, shape)
        });
        parts.push(pattern, list.collect());
    }
    Some((slices.into_iter().map(Some).collect(), parts))
}

/// The concatenation dim of `group`'s merge chain: `Some(None)` for `MergeModulelist(0)` alone,
/// `Some(Some(d))` when `Concatenate(d)` follows it; `None` for any other ops.
fn chain_concat_dim(group: &PlannedGroup) -> Option<Option<usize>> {
    match group.ops.as_slice() {
        [merge] if is_merge0(merge.as_ref()) => Some(None),
        [merge, concat] if is_merge0(merge.as_ref()) => {
            let concat = concat.as_any()?.downcast_ref::<Concatenate>()?;
            // Recorded split sizes are checked by the op itself: leave those to it.
            match concat.split_sizes() {
                Some(_) => None,
                None => Some(Some(concat.dim())),
            }
        }
        _ => None,
    }
}

fn is_merge0(op: &dyn ConversionOp) -> bool {
    op.as_any()
        .and_then(|any| any.downcast_ref::<MergeModulelist>())
        .is_some_and(|merge| merge.dim() == 0)
}

/// Where each output byte comes from: per expert, per outer index, one slab of each source
/// pattern in declared order.
struct Slabs {
    /// Output shape (PyTorch layout).
    shape: Vec<usize>,
    /// Product of the per-expert dims before the concatenation dim.
    outer: usize,
    /// Bytes of one slab of each source pattern (expert-major order only).
    slab_bytes: Vec<usize>,
    /// Concatenating along the stacked dim: all experts of one pattern, then the next.
    pattern_major: bool,
}

impl Slabs {
    /// `shapes`: one source's shape per pattern; `elem`: bytes per element.
    fn new(
        shapes: &[&[usize]],
        experts: usize,
        elem: usize,
        concat_dim: Option<usize>,
    ) -> Option<Self> {
        let shape0 = shapes[0];
        match concat_dim {
            // Merge alone: the experts' tensors one after the other.
            None => Some(Self {
                shape: [&[experts][..], shape0].concat(),
                outer: 1,
                slab_bytes: Vec::new(),
                pattern_major: true,
            }),
            // Concatenation along the stacked dim: all of one pattern, then the next.
            Some(0) => {
                if !shapes.iter().all(|s| *s == shape0) {
                    return None;
                }
                Some(Self {
                    shape: [&[experts * shapes.len()][..], shape0].concat(),
                    outer: 1,
                    slab_bytes: Vec::new(),
                    pattern_major: true,
                })
            }
            Some(dim) => {
                let c = dim - 1;
                if c >= shape0.len() {
                    return None;
                }
                let fits = shapes.iter().all(|s| {
                    s.len() == shape0.len()
                        && s[..c] == shape0[..c]
                        && s[c + 1..] == shape0[c + 1..]
                });
                if !fits {
                    return None;
                }
                let outer: usize = shape0[..c].iter().product();
                let inner: usize = shape0[c + 1..].iter().product();
                let slab_bytes = shapes.iter().map(|s| s[c] * inner * elem).collect();
                let mut shape = vec![experts];
                shape.extend_from_slice(&shape0[..c]);
                shape.push(shapes.iter().map(|s| s[c]).sum());
                shape.extend_from_slice(&shape0[c + 1..]);
                Some(Self { shape, outer, slab_bytes, pattern_major: false })
            }
        }
    }

    /// Fills expert `e`'s region of an expert-major output. With one outer index each source is
    /// one contiguous slab, read in place; otherwise its slabs interleave with the other
    /// patterns', so it is read whole into a buffer of its own and its slabs copied from there.
    fn fill_expert(
        &self,
        e: usize,
        region: &mut [u8],
        read: &ReadSource<'_>,
    ) -> Result<(), LoadError> {
        if self.outer == 1 {
            let regions = split_regions(region, self.slab_bytes.iter().copied());
            for (k, part) in regions.into_iter().enumerate() {
                read(k, e, part)?;
            }
            return Ok(());
        }
        for (k, &slab) in self.slab_bytes.iter().enumerate() {
            let mut source = vec![0u8; self.outer * slab];
            read(k, e, &mut source)?;
            let before: usize = self.slab_bytes[..k].iter().sum();
            let stride: usize = self.slab_bytes.iter().sum();
            for (o, bytes) in source.chunks_exact(slab).enumerate() {
                let at = o * stride + before;
                region[at..at + slab].copy_from_slice(bytes);
            }
        }
        Ok(())
    }
}

/// `out` cut into consecutive regions of `sizes` bytes (which [`Slabs::new`] made sum to its
/// length).
fn split_regions(mut out: &mut [u8], sizes: impl Iterator<Item = usize>) -> Vec<&mut [u8]> {
    sizes
        .map(|size| {
            let (region, rest) = std::mem::take(&mut out).split_at_mut(size);
            out = rest;
            region
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use patcher_core::plan::PlanOptions;
    use patcher_core::{ConversionPlan, HostTensor, WeightConverter, WeightTransform};

    use super::*;

    const GATE: &str = "experts.*.gate";
    const UP: &str = "experts.*.up";

    /// Plans one group of 3 experts with `ops` and checks that the fast path gives exactly what
    /// running the ops gives (or declines when `expect_fast` is false).
    fn check(
        ops: Vec<Arc<dyn ConversionOp>>,
        sources: &[(&str, [usize; 2])],
        target_shape: &[usize],
        expect_fast: bool,
    ) {
        let patterns: Vec<&str> = sources.iter().map(|(p, _)| *p).collect();
        let converter = WeightConverter::try_new(patterns, "experts.fused", ops).unwrap();
        let transforms: Vec<WeightTransform> = vec![converter.into()];
        let mut checkpoint = Vec::new();
        let mut tensors = std::collections::HashMap::new();
        for (k, (source, shape)) in sources.iter().enumerate() {
            for e in 0..3 {
                let key = source.replace('*', &e.to_string());
                let shape = shape.to_vec();
                let n: usize = shape.iter().product();
                let values: Vec<f32> = (0..n).map(|i| (100 * k + 10 * e + i) as f32).collect();
                checkpoint.push((key.clone(), TensorMeta::new(DType::F32, shape.clone())));
                tensors.insert(key, HostTensor::from_f32(shape, &values));
            }
        }
        let expected = [("experts.fused", target_shape.to_vec())];
        let plan =
            ConversionPlan::new(&transforms, &checkpoint, &expected, &PlanOptions::default());
        let group = plan
            .groups()
            .first()
            .unwrap_or_else(|| panic!("{}", plan.report()));
        let inputs = group
            .sources
            .clone()
            .map(|key| tensors[&key].view().into_owned());
        let metas = inputs.clone().map(|tensor| tensor.meta());
        let chain = MergeChain::plan(group, &metas, DType::F32);
        assert_eq!(chain.is_some(), expect_fast);
        if let Some(chain) = chain {
            let read = |k: usize, e: usize, dst: &mut [u8]| -> Result<(), LoadError> {
                let source = &inputs.get(&group.source_patterns[k]).unwrap()[e];
                dst.copy_from_slice(&source.bytes);
                Ok(())
            };
            let (key, data) = chain.gather(&read).unwrap();
            let (general_key, general) = group.execute(inputs).unwrap().remove(0);
            assert_eq!(key, general_key);
            assert_eq!(data.shape.to_vec(), general.shape);
            assert_eq!(data.to_vec::<f32>().unwrap(), general.to_f32_vec().unwrap());
        }
    }

    #[test]
    fn merge_then_concatenate_matches_the_ops() {
        let ops: Vec<Arc<dyn ConversionOp>> = vec![
            Arc::new(MergeModulelist::new(0)),
            Arc::new(Concatenate::new(1)),
        ];
        check(ops, &[(GATE, [2, 3]), (UP, [1, 3])], &[3, 3, 3], true);
        // Along the stacked dim: every gate expert, then every up expert.
        let ops: Vec<Arc<dyn ConversionOp>> = vec![
            Arc::new(MergeModulelist::new(0)),
            Arc::new(Concatenate::new(0)),
        ];
        check(ops, &[(GATE, [2, 3]), (UP, [2, 3])], &[6, 2, 3], true);
        // Along the last dim: the slabs of gate and up interleave row by row.
        let ops: Vec<Arc<dyn ConversionOp>> = vec![
            Arc::new(MergeModulelist::new(0)),
            Arc::new(Concatenate::new(2)),
        ];
        check(ops, &[(GATE, [2, 3]), (UP, [2, 1])], &[3, 2, 4], true);
    }

    #[test]
    fn merge_alone_matches_the_op() {
        let ops: Vec<Arc<dyn ConversionOp>> = vec![Arc::new(MergeModulelist::new(0))];
        check(ops, &[(GATE, [2, 3])], &[3, 2, 3], true);
    }

    #[test]
    fn other_chains_take_the_general_path() {
        let sized: Vec<Arc<dyn ConversionOp>> = vec![
            Arc::new(MergeModulelist::new(0)),
            Arc::new(Concatenate::new(1).with_split_sizes([2, 1])),
        ];
        check(sized, &[(GATE, [2, 3]), (UP, [1, 3])], &[3, 3, 3], false);
        let stacked_on_1: Vec<Arc<dyn ConversionOp>> = vec![Arc::new(MergeModulelist::new(1))];
        check(stacked_on_1, &[(GATE, [2, 3])], &[2, 3, 3], false);
    }
}
