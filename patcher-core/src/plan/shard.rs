//! Tensor parallelism in the plan (transformers' `tp_plan`): which parameters are split across
//! peers, and which slice of the full tensor (as the checkpoint's conversions produce it) each
//! peer holds.
//!
//! A peer's model is built with its local shapes (a quarter of the heads and of the MLP width
//! for 4 peers). The plan multiplies a split parameter's local shape back to the full shape,
//! plans and checks the conversions on full tensors (so ops that move data across the split
//! dimension, a concatenation of q, k and v, run before the slice), and gives each written
//! target the [`ShardSlice`] this peer keeps. The loader reads only the bytes of that slice
//! when the target is a checkpoint tensor as it is.

use std::ops::Range;

use super::module_pattern::ModulePattern;
use crate::tensor::HostTensor;

/// How a parameter is split across peers, on its PyTorch layout (transformers' `tp_plan`
/// styles).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Split {
    /// Along the output features: dim -2 of a weight (`[out, in]`, `[experts, out, in]`), dim 0
    /// of a bias. transformers' `colwise`.
    Colwise,
    /// [`Colwise`](Self::Colwise), of a weight made of blocks stacked along its output features
    /// (`gate | up`, `q | k | v`), in these proportions: each block is split on its own, so a
    /// peer holds its part of each. transformers' `packed_colwise`.
    PackedColwise(Vec<usize>),
    /// [`Colwise`](Self::Colwise) by whole attention heads, for a weight made of blocks of
    /// heads stacked along its output features (`[num_heads]` for q, `[num_key_value_heads]`
    /// for k or v, `[heads, kv_heads, kv_heads]` for a fused q|k|v): each peer takes its share
    /// of each block's heads, or, from a block with fewer heads than peers (grouped-query KV
    /// heads), the one head its query heads use, so that head is replicated on several peers.
    Heads(Vec<usize>),
    /// Along the input features: dim -1 of a weight. A bias is kept whole on every peer (the
    /// forward adds it once, after the all-reduce). transformers' `rowwise`.
    Rowwise,
    /// Along `dim` of any tensor, in `blocks` as [`PackedColwise`](Self::PackedColwise) (empty:
    /// one block): for layouts the named styles do not describe (GPT-2's `Conv1D` stores
    /// `[in, out]`).
    Dim {
        /// The PyTorch dimension.
        dim: usize,
        /// Proportions of the stacked blocks; empty for one.
        blocks: Vec<usize>,
    },
}

impl Split {
    /// The dimension split and the block proportions for a tensor of `rank` dimensions; `None`
    /// when the tensor is kept whole (a rowwise bias, a scalar).
    fn resolve(&self, rank: usize) -> Option<(usize, &[usize])> {
        match self {
            Self::Colwise => (rank >= 1).then(|| (rank.saturating_sub(2), &[][..])),
            Self::PackedColwise(blocks) | Self::Heads(blocks) => {
                (rank >= 1).then(|| (rank.saturating_sub(2), &blocks[..]))
            }
            Self::Rowwise => (rank >= 2).then(|| (rank - 1, &[][..])),
            Self::Dim { dim, blocks } => Some((*dim, &blocks[..])),
        }
    }
}

/// Why a tensor-parallel plan cannot be made or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The peer's rank is not below the number of peers, or there are none.
    #[error("peer {rank} of {world}: the rank must be below the number of peers, which must be at least 1")]
    Peers {
        /// This peer.
        rank: usize,
        /// How many peers share the model.
        world: usize,
    },
    /// A module pattern that is empty or holds characters other than letters, digits, `_`, `.`
    /// and `*`.
    #[error("tensor-parallel pattern `{pattern}`: write a module path such as `layers.*.mlp.up_proj` (letters, digits, `_`, `.`, and `*` for an index)")]
    Pattern {
        /// The pattern as given.
        pattern: String,
    },
    /// The split does not fit the tensor: the dimension is missing, or its size does not divide
    /// into the blocks and peers.
    #[error(
        "cannot split `{key}` of shape {shape:?} across {world} peers: {reason}; change the \
         plan's rule for it or the number of peers"
    )]
    Indivisible {
        /// The parameter.
        key: String,
        /// Its full shape.
        shape: Vec<usize>,
        /// How many peers share it.
        world: usize,
        /// What does not divide.
        reason: String,
    },
}

/// Which part of a full tensor one peer holds: ranges along one dimension, in order.
///
/// Its methods take the full tensor's shape; a slice that [`TensorParallel::slice_of`] made for
/// that shape always fits it. One built by hand must name a dimension of the shape and ranges
/// inside it, or they panic (as slice indexing does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSlice {
    /// The PyTorch dimension split.
    pub dim: usize,
    /// The peer's ranges along `dim` (one per block), concatenated in order.
    pub ranges: Vec<Range<usize>>,
}

impl ShardSlice {
    /// The peer's size along [`dim`](Self::dim).
    pub fn len(&self) -> usize {
        self.ranges.iter().map(ExactSizeIterator::len).sum()
    }

    /// Whether the peer holds nothing (never, for a slice the plan made).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The peer's shape of a tensor of `full` shape.
    pub fn local_shape(&self, full: &[usize]) -> Vec<usize> {
        let mut shape = full.to_vec();
        shape[self.dim] = self.len();
        shape
    }

    /// The byte ranges of the peer's part in the row-major data of a tensor of `full` shape with
    /// `elem`-byte elements, in the order the part is laid out (adjacent ranges merged): one
    /// range when the part is contiguous in the file.
    pub fn byte_runs(&self, full: &[usize], elem: usize) -> Vec<Range<usize>> {
        let outer: usize = full[..self.dim].iter().product();
        let inner: usize = full[self.dim + 1..].iter().product::<usize>() * elem;
        let mut runs: Vec<Range<usize>> = Vec::new();
        for o in 0..outer {
            for range in &self.ranges {
                let start = (o * full[self.dim] + range.start) * inner;
                let end = start + range.len() * inner;
                match runs.last_mut() {
                    Some(last) if last.end == start => last.end = end,
                    _ => runs.push(start..end),
                }
            }
        }
        runs
    }

    /// Writes a peer's `part` (of this slice's shape) into its place in `full`: the inverse of
    /// [`take`](Self::take). Errors (naming the shapes) when `part` is not this slice of `full`.
    pub fn put(&self, part: &HostTensor<'_>, full: &mut HostTensor<'_>) -> Result<(), String> {
        let expected = self.local_shape(&full.shape);
        if part.shape != expected || part.dtype != full.dtype {
            return Err(format!(
                "a part of {} {:?} is not the slice {:?} of {:?} along dimension {} of {} {:?}",
                part.dtype, part.shape, expected, self.ranges, self.dim, full.dtype, full.shape
            ));
        }
        let runs = self.byte_runs(&full.shape, full.dtype.size_in_bytes());
        let bytes = full.bytes.to_mut();
        let mut at = 0;
        for run in runs {
            let len = run.len();
            bytes[run].copy_from_slice(&part.bytes[at..at + len]);
            at += len;
        }
        Ok(())
    }

    /// The peer's part of `tensor` (of the full shape), copied.
    pub fn take(&self, tensor: &HostTensor<'_>) -> HostTensor<'static> {
        let elem = tensor.dtype.size_in_bytes();
        let mut bytes =
            Vec::with_capacity(tensor.num_bytes() / tensor.shape[self.dim].max(1) * self.len());
        for run in self.byte_runs(&tensor.shape, elem) {
            bytes.extend_from_slice(&tensor.bytes[run]);
        }
        HostTensor::new(tensor.dtype, self.local_shape(&tensor.shape), bytes)
    }
}

/// One peer's tensor-parallel plan: the peers, and which parameters are split how
/// (transformers' `base_model_tp_plan`, for this peer).
///
/// Rules name module paths, `*` standing for an index, and apply to the parameters of the
/// modules they match anywhere in a key (`layers.*.mlp.up_proj` matches
/// `model.layers.3.mlp.up_proj.weight`), or name a parameter itself
/// (`layers.*.mlp.experts.gate_up_proj`); the first rule that matches wins, and parameters no
/// rule matches are replicated (every peer holds them whole).
///
/// ```
/// use patcher_core::plan::{Split, TensorParallel};
///
/// let tp = TensorParallel::new(1, 2)?
///     .split("layers.*.mlp.up_proj", Split::Colwise)?
///     .split("layers.*.mlp.down_proj", Split::Rowwise)?;
/// // Peer 1 of 2 holds rows 4..8 of an [8, 3] up projection.
/// let slice = tp.slice_of("model.layers.0.mlp.up_proj.weight", &[8, 3])?.unwrap();
/// assert_eq!((slice.dim, slice.ranges.clone()), (0, vec![4..8]));
/// // Its model is built with [4, 3]: the plan checks the checkpoint against [8, 3].
/// assert_eq!(tp.full_shape("model.layers.0.mlp.up_proj.weight", &[4, 3]), Some(vec![8, 3]));
/// // Columns of the down projection; its bias and the norms are whole on every peer.
/// let down = tp.slice_of("model.layers.0.mlp.down_proj.weight", &[3, 8])?.unwrap();
/// assert_eq!((down.dim, down.ranges), (1, vec![4..8]));
/// assert_eq!(tp.slice_of("model.layers.0.mlp.down_proj.bias", &[3])?, None);
/// assert_eq!(tp.slice_of("model.norm.weight", &[3])?, None);
/// # Ok::<(), patcher_core::plan::ShardError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TensorParallel {
    rank: usize,
    world: usize,
    rules: Vec<(ModulePattern, Split)>,
}

impl TensorParallel {
    /// Peer `rank` of `world` peers, with no rule yet (everything replicated).
    pub fn new(rank: usize, world: usize) -> Result<Self, ShardError> {
        if world == 0 || rank >= world {
            return Err(ShardError::Peers { rank, world });
        }
        Ok(Self { rank, world, rules: Vec::new() })
    }

    /// Adds a rule: the parameters of modules matching `module` (a path, `*` for an index) are
    /// split as `split`.
    pub fn split(mut self, module: &str, split: Split) -> Result<Self, ShardError> {
        let pattern =
            ModulePattern::new(module).map_err(|pattern| ShardError::Pattern { pattern })?;
        self.rules.push((pattern, split));
        Ok(self)
    }

    /// This peer.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many peers share the model.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The rules, in order: module pattern and split.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &Split)> {
        self.rules.iter().map(|(p, s)| (p.as_str(), s))
    }

    /// How parameter `key` is split, if a rule matches it.
    pub fn split_of(&self, key: &str) -> Option<&Split> {
        self.rules
            .iter()
            .find(|(pattern, _)| pattern.matches_param(key))
            .map(|(_, split)| split)
    }

    /// The full shape of parameter `key`, whose peer holds `local` (the split dimension times
    /// the number of peers, or for [`Split::Heads`] the heads of every block); `None` when it is
    /// not split.
    pub fn full_shape(&self, key: &str, local: &[usize]) -> Option<Vec<usize>> {
        let split = self.split_of(key)?;
        let (dim, blocks) = split.resolve(local.len())?;
        let mut full = local.to_vec();
        let size = full.get_mut(dim)?;
        *size = match split {
            Split::Heads(_) => {
                let local_heads: usize = blocks.iter().map(|&b| self.local_heads(b)).sum();
                let head_dim = (local_heads > 0).then(|| *size / local_heads)?;
                blocks.iter().sum::<usize>().checked_mul(head_dim)?
            }
            _ => size.checked_mul(self.world)?,
        };
        Some(full)
    }

    /// Heads of a block of `heads` a peer holds: its share, or one when there are fewer heads
    /// than peers.
    fn local_heads(&self, heads: usize) -> usize {
        (heads / self.world).max(1)
    }

    /// The part of parameter `key` (of `full` shape) this peer holds; `None` when it is not
    /// split (or there is one peer).
    pub fn slice_of(&self, key: &str, full: &[usize]) -> Result<Option<ShardSlice>, ShardError> {
        let Some(split) = self.split_of(key) else {
            return Ok(None);
        };
        let Some((dim, blocks)) = split.resolve(full.len()) else {
            return Ok(None);
        };
        if self.world == 1 {
            return Ok(None);
        }
        let fail = |reason: String| ShardError::Indivisible {
            key: key.to_string(),
            shape: full.to_vec(),
            world: self.world,
            reason,
        };
        let Some(&size) = full.get(dim) else {
            return Err(fail(format!("it has no dimension {dim}")));
        };
        if let Split::Heads(_) = split {
            return self.head_ranges(dim, size, blocks).map_err(fail).map(Some);
        }
        let one = [1];
        let blocks = if blocks.is_empty() { &one[..] } else { blocks };
        let parts: usize = blocks.iter().sum();
        if parts == 0 || !size.is_multiple_of(parts) {
            return Err(fail(format!(
                "dimension {dim} ({size}) does not divide into blocks {blocks:?}"
            )));
        }
        let unit = size / parts;
        let mut ranges = Vec::with_capacity(blocks.len());
        let mut start = 0;
        for &block in blocks {
            let block_size = block * unit;
            if block_size == 0 || !block_size.is_multiple_of(self.world) {
                return Err(fail(format!(
                    "a block of {block_size} along dimension {dim} does not divide by {} peers",
                    self.world
                )));
            }
            let piece = block_size / self.world;
            ranges.push(start + self.rank * piece..start + (self.rank + 1) * piece);
            start += block_size;
        }
        Ok(Some(ShardSlice { dim, ranges }))
    }
}

impl TensorParallel {
    /// [`Split::Heads`]: the rows of this peer's heads in each block of `size` rows along `dim`.
    fn head_ranges(&self, dim: usize, size: usize, blocks: &[usize]) -> Result<ShardSlice, String> {
        let heads: usize = blocks.iter().sum();
        if heads == 0 || !size.is_multiple_of(heads) {
            return Err(format!(
                "dimension {dim} ({size}) is not {heads} heads of one width"
            ));
        }
        let head_dim = size / heads;
        let (rank, world) = (self.rank, self.world);
        let mut ranges = Vec::with_capacity(blocks.len());
        let mut start = 0;
        for &block in blocks {
            let first = if block.is_multiple_of(world) {
                rank * (block / world)
            } else if world.is_multiple_of(block) {
                rank * block / world
            } else {
                return Err(format!(
                    "a block of {block} heads can neither be shared out among {world} peers nor \
                     replicated on an equal number of them"
                ));
            };
            let count = self.local_heads(block);
            ranges.push(start + first * head_dim..start + (first + count) * head_dim);
            start += block * head_dim;
        }
        Ok(ShardSlice { dim, ranges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn packed_blocks_are_split_one_by_one() {
        let tp = TensorParallel::new(1, 2)
            .unwrap()
            .split("self_attn.qkv_proj", Split::PackedColwise(vec![4, 2, 2]))
            .unwrap();
        // q: 8 rows, k: 4, v: 4 (head_dim 2); peer 1 holds the second half of each.
        let slice = tp
            .slice_of("layers.0.self_attn.qkv_proj.weight", &[16, 3])
            .unwrap();
        assert_eq!(slice.unwrap().ranges, vec![4..8, 10..12, 14..16]);
        let bad = tp.slice_of("layers.0.self_attn.qkv_proj.weight", &[15, 3]);
        assert!(matches!(bad, Err(ShardError::Indivisible { .. })));
    }

    #[test]
    fn kv_heads_fewer_than_peers_are_replicated() {
        // 4 query heads, 2 KV heads of width 3, 4 peers: peer 3 takes q head 3 and KV head 1.
        let tp = TensorParallel::new(3, 4).unwrap();
        let tp = tp.split("k_proj", Split::Heads(vec![2])).unwrap();
        let tp = tp.split("qkv_proj", Split::Heads(vec![4, 2, 2])).unwrap();
        let k = tp.slice_of("k_proj.weight", &[6, 8]).unwrap().unwrap();
        assert_eq!(k.ranges, vec![3..6]);
        assert_eq!(tp.full_shape("k_proj.weight", &[3, 8]), Some(vec![6, 8]));
        let qkv = tp.slice_of("qkv_proj.weight", &[24, 8]).unwrap().unwrap();
        assert_eq!(qkv.ranges, vec![9..12, 15..18, 21..24]);
        assert_eq!(tp.full_shape("qkv_proj.weight", &[9, 8]), Some(vec![24, 8]));
        // 3 KV heads on 2 peers neither divide nor replicate.
        let tp = TensorParallel::new(0, 2)
            .unwrap()
            .split("k_proj", Split::Heads(vec![3]))
            .unwrap();
        assert!(tp.slice_of("k_proj.weight", &[9, 8]).is_err());
    }

    #[test]
    fn take_copies_the_strided_part() {
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let tensor = HostTensor::from_f32([3, 4], &values);
        let columns = 2..4;
        let slice = ShardSlice { dim: 1, ranges: vec![columns] };
        assert_eq!(slice.byte_runs(&[3, 4], 4), vec![8..16, 24..32, 40..48]);
        let part = slice.take(&tensor);
        assert_eq!(part.shape, [3, 2]);
        assert_eq!(part.to_f32_vec().unwrap(), [2.0, 3.0, 6.0, 7.0, 10.0, 11.0]);
        // `put` is its inverse.
        let mut full = HostTensor::from_f32([3, 4], &[0.0; 12]);
        slice.put(&part, &mut full).unwrap();
        let back: Vec<f32> = (0..12)
            .map(|i| if i % 4 >= 2 { i as f32 } else { 0.0 })
            .collect();
        assert_eq!(full.to_f32_vec().unwrap(), back);
        assert!(slice.put(&tensor, &mut full).is_err());
        // Rows are one run.
        let rows = 1..3;
        let rows = ShardSlice { dim: 0, ranges: vec![rows] };
        assert_eq!(
            rows.byte_runs(&[3, 4], DType::F32.size_in_bytes()),
            vec![16..48]
        );
    }

    #[test]
    fn invalid_peers_and_patterns_are_errors() {
        assert!(matches!(
            TensorParallel::new(2, 2),
            Err(ShardError::Peers { .. })
        ));
        assert!(matches!(
            TensorParallel::new(0, 0),
            Err(ShardError::Peers { .. })
        ));
        let tp = TensorParallel::new(0, 2).unwrap();
        assert!(matches!(
            tp.clone().split("", Split::Colwise),
            Err(ShardError::Pattern { .. })
        ));
        assert!(matches!(
            tp.split("a(b", Split::Colwise),
            Err(ShardError::Pattern { .. })
        ));
    }

    #[test]
    fn rules_match_whole_module_names() {
        let tp = TensorParallel::new(0, 2)
            .unwrap()
            .split("mlp.up_proj", Split::Colwise)
            .unwrap();
        assert!(tp.split_of("model.layers.0.mlp.up_proj.weight").is_some());
        assert!(tp
            .split_of("model.layers.0.mlp.up_proj.lora_A.weight")
            .is_none());
        assert!(tp.split_of("model.layers.0.xmlp.up_proj.weight").is_none());
        assert!(tp.split_of("model.layers.0.mlp.up_proj").is_some());
    }
}
