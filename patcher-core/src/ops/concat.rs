//! `Concatenate` and its reverse `Chunk` (`torch.cat` / `torch.chunk` along one dim); with
//! recorded sizes, `Concatenate` reverses to [`Split`].

use std::sync::Arc;

use super::check::{check_dim, common_dtype, describe, list, metas, take_one};
use super::layout::{concat, slice_mid, Split3};
use super::{ConversionOp, Groups, OpContext, OpError, Split};
use crate::tensor::{HostTensor, TensorMeta};

/// Concatenates every collected tensor along `dim` into the single target, taking the source
/// patterns in their **declared** order (not the order they were collected in) and each
/// pattern's tensors in list order; sources without tensors are skipped. Reverse: [`Chunk`], or
/// [`Split`] when the sizes are recorded with [`Concatenate::with_split_sizes`].
///
/// ```
/// use patcher_core::ops::{Concatenate, ConversionOp, Groups, OpContext};
/// use patcher_core::HostTensor;
///
/// let sources = ["w1".to_string(), "w3".to_string()];
/// let targets = ["gate_up".to_string()];
/// let ctx = OpContext { source_patterns: &sources, target_patterns: &targets, target_key: "mlp.gate_up" };
/// let inputs = Groups::new()
///     .with("w3", vec![HostTensor::from_f32([1, 2], &[3.0, 4.0])])
///     .with("w1", vec![HostTensor::from_f32([1, 2], &[1.0, 2.0])]);
/// let out = Concatenate::new(0).convert(inputs, &ctx)?;
/// let fused = &out.get("gate_up").unwrap()[0];
/// assert_eq!(fused.shape, vec![2, 2]);
/// assert_eq!(fused.to_f32_vec()?, vec![1.0, 2.0, 3.0, 4.0]); // w1 first: declared order
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concatenate {
    dim: usize,
    sizes: Option<Vec<usize>>,
}

impl Concatenate {
    /// Concatenation along `dim`.
    pub fn new(dim: usize) -> Self {
        Self { dim, sizes: None }
    }

    /// Records the size along `dim` of each source pattern, in declared order (the tensors of a
    /// pattern count together), so that the reverse is [`Split::new(dim, sizes)`](Split) instead
    /// of an equal [`Chunk`]: what saving back a fused QKV projection under grouped-query
    /// attention needs, where q has `heads * head_dim` rows and k and v `kv_heads * head_dim`.
    /// Loading then checks that the inputs have exactly these sizes (an [`OpError`] otherwise),
    /// so load and save cut at the same places.
    ///
    /// ```
    /// use patcher_core::ops::{Concatenate, ConversionOp, Groups, OpContext};
    /// use patcher_core::HostTensor;
    ///
    /// // 2 query heads and 1 key/value head of head_dim 2, hidden size 2.
    /// let (sources, targets) = (["q".to_string(), "k".to_string(), "v".to_string()], ["qkv".to_string()]);
    /// let fuse = Concatenate::new(0).with_split_sizes([4, 2, 2]);
    /// assert_eq!(fuse.name(), "Concatenate(dim=0, sizes=[4, 2, 2])");
    /// let ctx = OpContext { source_patterns: &sources, target_patterns: &targets, target_key: "attn.qkv" };
    /// let q: Vec<f32> = (0..8).map(|v| v as f32).collect();
    /// let inputs = Groups::new()
    ///     .with("q", vec![HostTensor::from_f32([4, 2], &q)])
    ///     .with("k", vec![HostTensor::from_f32([2, 2], &[8.0, 9.0, 10.0, 11.0])])
    ///     .with("v", vec![HostTensor::from_f32([2, 2], &[12.0, 13.0, 14.0, 15.0])]);
    /// let fused = fuse.convert(inputs.clone(), &ctx)?;
    /// assert_eq!(fused.get("qkv").unwrap()[0].shape, vec![8, 2]);
    ///
    /// // Saving back: the reverse splits 4 + 2 + 2 rows, not three equal chunks.
    /// let split = fuse.reverse().unwrap();
    /// assert_eq!(split.name(), "Split(dim=0, sizes=[4, 2, 2])");
    /// let ctx = OpContext { source_patterns: &targets, target_patterns: &sources, target_key: "attn.q" };
    /// assert_eq!(split.convert(fused, &ctx)?, inputs);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_split_sizes(mut self, sizes: impl Into<Vec<usize>>) -> Self {
        self.sizes = Some(sizes.into());
        self
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The recorded size of each source along the dim, if any.
    pub fn split_sizes(&self) -> Option<&[usize]> {
        self.sizes.as_deref()
    }

    /// The target and the output metadata.
    fn plan(
        &self,
        inputs: &Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<(String, TensorMeta), OpError> {
        let [target] = ctx.target_patterns else {
            return Err(OpError::new(
                self,
                ctx,
                format!(
                    "needs exactly one target pattern, the converter has {}; use Chunk to split \
                     one tensor into several targets",
                    list(ctx.target_patterns.iter().map(String::as_str))
                ),
            ));
        };
        // Tensors under a pattern that is not a source would be dropped silently (transformers
        // does); an error says which op left them there.
        if let Some(stray) = inputs
            .patterns()
            .find(|p| !ctx.source_patterns.iter().any(|s| s == p))
        {
            return Err(OpError::new(
                self,
                ctx,
                format!(
                    "got tensors for `{stray}`, which is not one of the source patterns {}; the \
                     op before it must key its outputs by source pattern",
                    list(ctx.source_patterns.iter().map(String::as_str))
                ),
            ));
        }
        if let Some(sizes) = &self.sizes {
            if sizes.len() != ctx.source_patterns.len() {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!(
                        "has {} sizes {sizes:?} for {} source patterns {}; record one size per \
                         source, in declared order",
                        sizes.len(),
                        ctx.source_patterns.len(),
                        list(ctx.source_patterns.iter().map(String::as_str))
                    ),
                ));
            }
        }
        let dtype = common_dtype(self, ctx, inputs)?;
        let mut first: Option<(&str, &TensorMeta)> = None;
        let mut total = 0;
        for source in ctx.source_patterns {
            for t in inputs.get(source).unwrap_or_default() {
                check_dim(self, ctx, source, &t.shape, self.dim, false)?;
                match first {
                    None => first = Some((source, t)),
                    Some((first_pattern, f)) => {
                        let same = f.shape.len() == t.shape.len()
                            && (0..t.shape.len())
                                .all(|d| d == self.dim || f.shape[d] == t.shape[d]);
                        if !same {
                            return Err(OpError::new(
                                self,
                                ctx,
                                format!(
                                    "shapes {:?} (`{first_pattern}`) and {:?} (`{source}`) \
                                     differ outside dim {}; every input must have the same \
                                     shape except along the concatenation dim",
                                    f.shape, t.shape, self.dim
                                ),
                            ));
                        }
                    }
                }
                total += t.shape[self.dim];
            }
        }
        let (Some((_, f)), Some(dtype)) = (first, dtype) else {
            return Err(OpError::new(
                self,
                ctx,
                format!(
                    "no tensors for any source pattern {}; check that the source patterns match \
                     checkpoint keys",
                    list(ctx.source_patterns.iter().map(String::as_str))
                ),
            ));
        };
        if let Some(sizes) = &self.sizes {
            for (source, &expected) in ctx.source_patterns.iter().zip(sizes) {
                let tensors = inputs.get(source).unwrap_or_default();
                self.check_size(ctx, source, tensors, sizes, expected)?;
            }
        }
        let mut shape = f.shape.clone();
        shape[self.dim] = total;
        Ok((target.clone(), TensorMeta::new(dtype, shape)))
    }

    /// Checks that the tensors of `source` (dims already checked) add up to `expected` along
    /// the dim.
    fn check_size(
        &self,
        ctx: &OpContext<'_>,
        source: &str,
        tensors: &[TensorMeta],
        sizes: &[usize],
        expected: usize,
    ) -> Result<(), OpError> {
        let size: usize = tensors.iter().map(|t| t.shape[self.dim]).sum();
        if size == expected {
            return Ok(());
        }
        let shapes = match tensors {
            [] => "no tensor".to_string(),
            [t] => format!("shape {:?}", t.shape),
            _ => {
                let all: Vec<_> = tensors.iter().map(|t| format!("{:?}", t.shape)).collect();
                format!("shapes {}", all.join(", "))
            }
        };
        Err(OpError::new(
            self,
            ctx,
            format!(
                "`{source}` has size {size} along dim {} ({shapes}), not the {expected} recorded \
                 for it in sizes {sizes:?} (one per source {}); the sizes must match the \
                 checkpoint so that saving splits the tensor back at the same places",
                self.dim,
                list(ctx.source_patterns.iter().map(String::as_str))
            ),
        ))
    }
}

impl ConversionOp for Concatenate {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn pinned(
        &self,
        inputs: &Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Option<Arc<dyn ConversionOp>> {
        if self.sizes.is_some() {
            return None;
        }
        let sizes = ctx
            .source_patterns
            .iter()
            .map(|source| {
                let tensors = inputs.get(source).filter(|t| !t.is_empty())?;
                tensors
                    .iter()
                    .map(|t| t.shape.get(self.dim).copied())
                    .sum::<Option<usize>>()
            })
            .collect::<Option<Vec<usize>>>()?;
        // Even sizes: the plain reverse (an even Chunk) already splits them right.
        if sizes.windows(2).all(|w| w[0] == w[1]) {
            return None;
        }
        Some(Arc::new(self.clone().with_split_sizes(sizes)))
    }

    fn name(&self) -> String {
        match &self.sizes {
            None => format!("Concatenate(dim={})", self.dim),
            Some(sizes) => format!("Concatenate(dim={}, sizes={sizes:?})", self.dim),
        }
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        let (target, meta) = self.plan(&inputs, ctx)?;
        Ok(Groups::new().with(target, vec![meta]))
    }

    fn convert<'a>(
        &self,
        mut inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        let (target, meta) = self.plan(&metas(&inputs), ctx)?;
        let mut tensors: Vec<HostTensor<'a>> = Vec::new();
        for source in ctx.source_patterns {
            tensors.extend(inputs.take(source).unwrap_or_default());
        }
        // One part: the output is the input (a borrow stays a borrow).
        if let [_] = tensors.as_slice() {
            return Ok(Groups::new().with(target, tensors));
        }
        let elem = meta.dtype.size_in_bytes();
        let views: Vec<(&[u8], Split3)> = tensors
            .iter()
            .map(|t| (t.bytes.as_ref(), Split3::around(&t.shape, self.dim, elem)))
            .collect();
        let bytes = concat(&views);
        Ok(Groups::new().with(target, vec![HostTensor::new(meta.dtype, meta.shape, bytes)]))
    }

    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        match &self.sizes {
            None => Some(Arc::new(Chunk::new(self.dim))),
            Some(sizes) => Some(Arc::new(Split::new(self.dim, sizes.clone()))),
        }
    }
}

/// Splits the one input tensor along `dim` into as many pieces as there are targets, mapped to
/// the targets in order, with `torch.chunk` semantics: pieces of `ceil(size / n)`, the last one
/// possibly smaller; a size that `torch.chunk` would cut into fewer than `n` pieces is an error.
/// Reverse: [`Concatenate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    dim: usize,
}

/// One output of a [`Chunk`] or a [`Split`]: its target and its range along the dim.
#[derive(Debug)]
pub(super) struct Piece {
    pub(super) target: String,
    pub(super) start: usize,
    pub(super) len: usize,
}

/// The metadata of `pieces` of `meta` along `dim`, keyed by their targets.
pub(super) fn piece_metas(meta: &TensorMeta, dim: usize, pieces: Vec<Piece>) -> Groups<TensorMeta> {
    let mut out = Groups::new();
    for piece in pieces {
        let mut shape = meta.shape.clone();
        shape[dim] = piece.len;
        out.push(piece.target, vec![TensorMeta::new(meta.dtype, shape)]);
    }
    out
}

/// Cuts `tensor` (with metadata `meta`) into `pieces` along `dim`, keyed by their targets. Each
/// output byte is written once; a piece that is a contiguous run of a borrowed input stays
/// borrowed.
pub(super) fn cut_pieces<'a>(
    tensor: &HostTensor<'a>,
    meta: &TensorMeta,
    dim: usize,
    pieces: Vec<Piece>,
) -> Groups<HostTensor<'a>> {
    let split = Split3::around(&meta.shape, dim, meta.dtype.size_in_bytes());
    let mut out = Groups::new();
    for piece in pieces {
        let mut shape = meta.shape.clone();
        shape[dim] = piece.len;
        let bytes = slice_mid(&tensor.bytes, split, piece.start, piece.len);
        out.push(
            piece.target,
            vec![HostTensor::new(meta.dtype, shape, bytes)],
        );
    }
    out
}

impl Chunk {
    /// Chunking along `dim`.
    pub fn new(dim: usize) -> Self {
        Self { dim }
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The input pattern and metadata, and the pieces.
    fn plan(
        &self,
        inputs: &Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<(String, TensorMeta, Vec<Piece>), OpError> {
        let targets = ctx.target_patterns;
        let mut entries = inputs.iter();
        let (pattern, tensor) = match (entries.next(), entries.next()) {
            (Some((pattern, [tensor])), None) => (pattern, tensor),
            _ => {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!(
                        "expects one tensor of one pattern, got {}; chunk each tensor in its \
                         own converter",
                        describe(inputs)
                    ),
                ))
            }
        };
        if targets.len() < 2 {
            return Err(OpError::new(
                self,
                ctx,
                format!(
                    "needs at least two target patterns to chunk into, the converter has {}",
                    list(targets.iter().map(String::as_str))
                ),
            ));
        }
        check_dim(self, ctx, pattern, &tensor.shape, self.dim, false)?;
        let size = tensor.shape[self.dim];
        let n = targets.len();
        let piece = size.div_ceil(n);
        let pieces = if piece == 0 { n } else { size.div_ceil(piece) };
        if pieces != n {
            return Err(OpError::new(
                self,
                ctx,
                format!(
                    "size {size} along dim {} of `{pattern}` (shape {:?}) cuts into {pieces} \
                     pieces of at most {piece}, not {n} (one per target {}); torch.chunk needs a \
                     size that gives exactly one piece per target",
                    self.dim,
                    tensor.shape,
                    list(targets.iter().map(String::as_str))
                ),
            ));
        }
        let out = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let start = (i * piece).min(size);
                Piece { target: t.clone(), start, len: piece.min(size - start) }
            })
            .collect();
        Ok((pattern.to_string(), tensor.clone(), out))
    }
}

impl ConversionOp for Chunk {
    fn name(&self) -> String {
        format!("Chunk(dim={})", self.dim)
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        let (_, meta, pieces) = self.plan(&inputs, ctx)?;
        Ok(piece_metas(&meta, self.dim, pieces))
    }

    fn convert<'a>(
        &self,
        mut inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        let (pattern, meta, pieces) = self.plan(&metas(&inputs), ctx)?;
        let tensor = take_one(self, ctx, &mut inputs, &pattern)?;
        Ok(cut_pieces(&tensor, &meta, self.dim, pieces))
    }

    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        Some(Arc::new(Concatenate::new(self.dim)))
    }
}
