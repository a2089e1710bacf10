//! `PermuteForRope`: interleaved (complex) rotary rows to the rotate-half layout, per head.

use std::fmt::Write;
use std::sync::Arc;

use super::check::{common_dtype, metas, take_one};
use super::layout::permute;
use super::{ConversionOp, Groups, OpContext, OpError};
use crate::tensor::{HostTensor, TensorMeta};

/// Reorders the rows of each head from interleaved pairs `[x0, y0, x1, y1, …]` to the
/// rotate-half layout `[x0, x1, …, y0, y1, …]` that Hugging Face attention expects: a 2-D weight
/// `[rows, in]` is viewed as `[heads, rows/heads/2, 2, in]` and the middle axes swapped; a 1-D
/// bias the same way without `in`. With `inverse` the view is `[heads, 2, rows/heads/2, …]`,
/// which undoes it. Reverse: the op with `inverse` flipped.
///
/// The head count is set **per pattern**: every input pattern is matched against the names
/// given to [`heads`](Self::heads) (first name the pattern contains wins), so grouped-query
/// attention permutes `k_proj` with the key/value head count. transformers uses
/// `num_attention_heads` for every pattern, which is wrong for K when the counts differ. A
/// pattern no name matches uses [`default_heads`](Self::default_heads) if set, and otherwise
/// passes through unchanged (no copy).
///
/// Each pattern keeps its key (the op usually follows a [`Chunk`](crate::ops::Chunk) into
/// `q`/`k`/`v` targets); in a one-to-one converter the source pattern becomes the target.
///
/// ```
/// use patcher_core::ops::{ConversionOp, Groups, OpContext, PermuteForRope};
/// use patcher_core::HostTensor;
///
/// let sources = ["wk.weight".to_string()];
/// let targets = ["k_proj.weight".to_string()];
/// let ctx = OpContext { source_patterns: &sources, target_patterns: &targets, target_key: "k_proj.weight" };
/// // One K head of dimension 4, one input column: rows x0 y0 x1 y1 -> x0 x1 y0 y1.
/// let k = HostTensor::from_f32([4, 1], &[0.0, 10.0, 1.0, 11.0]);
/// let op = PermuteForRope::new().heads("q_proj", 8).heads("k_proj", 1);
/// let out = op.convert(Groups::new().with("wk.weight", vec![k]), &ctx)?;
/// assert_eq!(out.get("k_proj.weight").unwrap()[0].to_f32_vec()?, vec![0.0, 1.0, 10.0, 11.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermuteForRope {
    heads: Vec<(String, usize)>,
    default_heads: Option<usize>,
    inverse: bool,
}

/// Per input pattern: `(pattern, output key, metadata, (split shape, permutation) or none)`.
type RopePlan = Vec<(String, String, TensorMeta, Option<(Vec<usize>, Vec<usize>)>)>;

impl PermuteForRope {
    /// A permutation with no head counts yet: every pattern passes through until
    /// [`heads`](Self::heads) or [`default_heads`](Self::default_heads) is set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Patterns containing `name` (e.g. `"k_proj"`) have `heads` heads.
    pub fn heads(mut self, name: impl Into<String>, heads: usize) -> Self {
        self.heads.push((name.into(), heads));
        self
    }

    /// Head count for patterns that no [`heads`](Self::heads) name matches (transformers'
    /// behaviour with `num_attention_heads`).
    pub fn default_heads(self, heads: usize) -> Self {
        Self { default_heads: Some(heads), ..self }
    }

    /// The same op, going from rotate-half back to interleaved when `inverse` is true.
    pub fn with_inverse(self, inverse: bool) -> Self {
        Self { inverse, ..self }
    }

    /// Whether this is the inverse (rotate-half to interleaved) direction.
    pub fn is_inverse(&self) -> bool {
        self.inverse
    }

    /// The head count used for `pattern`, or `None` if it passes through.
    pub fn heads_for(&self, pattern: &str) -> Option<usize> {
        self.heads
            .iter()
            .find(|(name, _)| pattern.contains(name.as_str()))
            .map(|&(_, n)| n)
            .or(self.default_heads)
    }

    fn plan(&self, inputs: &Groups<TensorMeta>, ctx: &OpContext<'_>) -> Result<RopePlan, OpError> {
        common_dtype(self, ctx, inputs)?;
        let one_to_one = inputs.len() == 1;
        let mut out = Vec::with_capacity(inputs.len());
        for (pattern, tensors) in inputs.iter() {
            let [tensor] = tensors else {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!(
                        "expects one tensor for `{pattern}`, got {}; permute each head \
                         projection separately",
                        tensors.len()
                    ),
                ));
            };
            let key = match (ctx.source_patterns, ctx.target_patterns) {
                ([source], [target]) if one_to_one && source == pattern => target.clone(),
                _ => pattern.to_string(),
            };
            let Some(heads) = self.heads_for(pattern).or_else(|| self.heads_for(&key)) else {
                out.push((pattern.to_string(), key, tensor.clone(), None));
                continue;
            };
            let shape = &tensor.shape;
            let (rows, rest) = match shape.as_slice() {
                [rows] => (*rows, None),
                [rows, cols] => (*rows, Some(*cols)),
                _ => {
                    return Err(OpError::new(
                        self,
                        ctx,
                        format!(
                            "`{pattern}` has shape {shape:?}; only 2-d weights and 1-d biases \
                             are permuted"
                        ),
                    ))
                }
            };
            if heads == 0 || rows % (2 * heads) != 0 {
                return Err(OpError::new(
                    self,
                    ctx,
                    format!(
                        "{rows} rows of `{pattern}` (shape {shape:?}) do not split into {heads} \
                         heads of an even size; check the head count given for this pattern"
                    ),
                ));
            }
            let half = rows / heads / 2;
            let mut split = if self.inverse {
                vec![heads, 2, half]
            } else {
                vec![heads, half, 2]
            };
            split.extend(rest);
            let mut perm: Vec<usize> = (0..split.len()).collect();
            perm.swap(1, 2);
            out.push((
                pattern.to_string(),
                key,
                tensor.clone(),
                Some((split, perm)),
            ));
        }
        Ok(out)
    }
}

impl ConversionOp for PermuteForRope {
    fn name(&self) -> String {
        let mut name = String::from("PermuteForRope(");
        for (pattern, n) in &self.heads {
            let _ = write!(name, "{pattern}={n}, ");
        }
        if let Some(n) = self.default_heads {
            let _ = write!(name, "default={n}, ");
        }
        let _ = write!(name, "inverse={})", self.inverse);
        name
    }

    fn infer(
        &self,
        inputs: Groups<TensorMeta>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<TensorMeta>, OpError> {
        let mut out = Groups::new();
        for (_, key, meta, _) in self.plan(&inputs, ctx)? {
            out.push(key, vec![meta]);
        }
        Ok(out)
    }

    fn convert<'a>(
        &self,
        mut inputs: Groups<HostTensor<'a>>,
        ctx: &OpContext<'_>,
    ) -> Result<Groups<HostTensor<'a>>, OpError> {
        let plan = self.plan(&metas(&inputs), ctx)?;
        let mut out = Groups::new();
        for (pattern, key, meta, layout) in plan {
            let tensor = take_one(self, ctx, &mut inputs, &pattern)?;
            let tensor = match layout {
                None => tensor,
                Some((split, perm)) => {
                    let elem = meta.dtype.size_in_bytes();
                    let bytes = permute(tensor.bytes, elem, &split, &perm);
                    HostTensor::new(meta.dtype, meta.shape, bytes)
                }
            };
            out.push(key, vec![tensor]);
        }
        Ok(out)
    }

    fn reverse(&self) -> Option<Arc<dyn ConversionOp>> {
        Some(Arc::new(self.clone().with_inverse(!self.inverse)))
    }
}
