//! A fast path for the expert-merging chains of transformers' MoE tables: `MergeModulelist(0)`
//! alone, or followed by `Concatenate(d)`.
//!
//! Their output is whole slabs of the source tensors in a fixed order, so it is gathered straight
//! into the parameter's typed buffer: one write per byte, where running the ops writes once per
//! op and the hand-over to Burn once more. Anything outside this exact shape of chain (or with an
//! unexpected shape) returns `None` and takes the general path, which also owns the errors.

use burn::tensor::{Element, TensorData};
use patcher_core::ops::{Concatenate, MergeModulelist};
use patcher_core::plan::{PlannedGroup, TargetStatus};
use patcher_core::{ConversionOp, DType, Groups, HostTensor};
use rayon::prelude::*;

/// The single target of `group` as Burn data, if its ops are a merge chain this path handles.
/// `release` is called with each source key as soon as its bytes are copied, so its mapped pages
/// can leave the resident set while the rest of the group is gathered.
pub(crate) fn merge_chain(
    group: &PlannedGroup,
    inputs: &Groups<HostTensor<'_>>,
    release: &(dyn Fn(&str) + Sync),
) -> Option<(String, TensorData)> {
    let concat_dim = match group.ops.as_slice() {
        [merge] if is_merge0(merge.as_ref()) && inputs.len() == 1 => None,
        [merge, concat] if is_merge0(merge.as_ref()) => {
            let concat = concat.as_any()?.downcast_ref::<Concatenate>()?;
            // Recorded split sizes are checked by the op itself: leave those to it.
            if concat.split_sizes().is_some() {
                return None;
            }
            Some(concat.dim())
        }
        _ => return None,
    };
    let [target] = group.targets.as_slice() else {
        return None;
    };
    if target.status != TargetStatus::Ready {
        return None;
    }
    let tensors: Vec<&[HostTensor<'_>]> = group
        .source_patterns
        .iter()
        .map(|pattern| inputs.get(pattern))
        .collect::<Option<_>>()?;
    let first = tensors.first()?.first()?;
    let (dtype, experts) = (first.dtype, tensors[0].len());
    let uniform = tensors.iter().all(|list| {
        list.len() == experts
            && list
                .iter()
                .all(|t| t.dtype == dtype && t.shape == list[0].shape)
    });
    if !uniform || !dtype.is_float() {
        return None;
    }
    let slabs = Slabs::new(&tensors, concat_dim)?;
    if slabs.shape != target.meta.shape {
        return None;
    }
    let keys: Vec<&[String]> = group
        .source_patterns
        .iter()
        .map(|pattern| group.sources.get(pattern))
        .collect::<Option<_>>()?;
    let done = |pattern: usize, index: usize| release(&keys[pattern][index]);
    let data = match dtype {
        DType::F32 => slabs.gather::<f32>(&tensors, done),
        DType::F16 => slabs.gather::<half::f16>(&tensors, done),
        DType::BF16 => slabs.gather::<half::bf16>(&tensors, done),
        DType::F64 => slabs.gather::<f64>(&tensors, done),
        _ => return None,
    };
    Some((target.key.clone(), data))
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
    fn new(tensors: &[&[HostTensor<'_>]], concat_dim: Option<usize>) -> Option<Self> {
        let shape0 = &tensors[0][0].shape;
        let elem = tensors[0][0].dtype.size_in_bytes();
        let experts = tensors[0].len();
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
                if !tensors.iter().all(|list| list[0].shape == *shape0) {
                    return None;
                }
                let rows: usize = tensors.iter().map(|list| list.len()).sum();
                Some(Self {
                    shape: [&[rows][..], shape0].concat(),
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
                let fits = tensors.iter().all(|list| {
                    let s = &list[0].shape;
                    s.len() == shape0.len()
                        && s[..c] == shape0[..c]
                        && s[c + 1..] == shape0[c + 1..]
                });
                if !fits {
                    return None;
                }
                let outer: usize = shape0[..c].iter().product();
                let inner: usize = shape0[c + 1..].iter().product();
                let slab_bytes = tensors
                    .iter()
                    .map(|list| list[0].shape[c] * inner * elem)
                    .collect();
                let mut shape = vec![experts];
                shape.extend_from_slice(&shape0[..c]);
                shape.push(tensors.iter().map(|list| list[0].shape[c]).sum());
                shape.extend_from_slice(&shape0[c + 1..]);
                Some(Self {
                    shape,
                    outer,
                    slab_bytes,
                    pattern_major: false,
                })
            }
        }
    }

    /// Copies every slab once into a zeroed buffer of `T` (a fresh zeroed allocation costs no
    /// write) and hands it to Burn as it is; `done(pattern, index)` follows each source tensor's
    /// last copy.
    ///
    /// The output is cut into contiguous regions, each filled from its own sources (one per
    /// source tensor when the patterns follow each other, one per expert otherwise), and the
    /// regions are copied in parallel: a group can be a layer's whole expert weights (64 MB
    /// in the load benchmark), which one thread alone would copy while the others wait.
    fn gather<T: Element + bytemuck::Pod>(
        &self,
        tensors: &[&[HostTensor<'_>]],
        done: impl Fn(usize, usize) + Sync,
    ) -> TensorData {
        let total: usize = self.shape.iter().product();
        let mut values = vec![T::zeroed(); total];
        let out: &mut [u8] = bytemuck::cast_slice_mut(&mut values);
        let experts = tensors[0].len();
        if self.pattern_major {
            let units: Vec<(usize, usize)> = (0..tensors.len())
                .flat_map(|k| (0..experts).map(move |e| (k, e)))
                .collect();
            let sizes = units.iter().map(|&(k, e)| tensors[k][e].bytes.len());
            let regions = split_regions(out, sizes);
            regions
                .into_par_iter()
                .zip(units)
                .for_each(|(region, (k, e))| {
                    region.copy_from_slice(&tensors[k][e].bytes);
                    done(k, e);
                });
        } else {
            let per_expert = self.outer * self.slab_bytes.iter().sum::<usize>();
            let sizes = std::iter::repeat_n(per_expert, experts);
            let regions = split_regions(out, sizes);
            regions.into_par_iter().enumerate().for_each(|(e, region)| {
                let mut at = 0;
                for o in 0..self.outer {
                    for (list, &slab) in tensors.iter().zip(&self.slab_bytes) {
                        let slab_bytes = &list[e].bytes[o * slab..(o + 1) * slab];
                        region[at..at + slab].copy_from_slice(slab_bytes);
                        at += slab;
                    }
                }
                (0..tensors.len()).for_each(|k| done(k, e));
            });
        }
        TensorData::new(values, self.shape.clone())
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
    use patcher_core::{ConversionPlan, TensorMeta, WeightConverter, WeightTransform};

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
        let fast = merge_chain(group, &inputs, &|_| {});
        assert_eq!(fast.is_some(), expect_fast);
        if let Some((key, data)) = fast {
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
