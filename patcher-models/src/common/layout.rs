//! Where the tokens of one decoder forward sit: their positions (after the cached ones, counted
//! over the kept tokens of a left-padded batch, as `generate` computes `position_ids`) and which
//! keys each may attend (causal, within a sliding window, not padding). The same for every
//! layer, so computed once per forward.

use burn::prelude::*;

/// Why a decoder refused its inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecoderInputError {
    /// The attention mask does not cover the cached positions and the new tokens.
    #[error(
        "attention_mask has shape {found:?}, expected {expected:?} ([batch, cached positions + \
         new tokens]): pass the mask of the whole sequence so far, as transformers does"
    )]
    MaskShape {
        /// The mask's shape.
        found: [usize; 2],
        /// `[batch, cached + new]`.
        expected: [usize; 2],
    },
    /// A position beyond the model's position table.
    #[error(
        "position {position} is beyond the model's {max} positions (n_positions / \
         max_position_embeddings): shorten the sequence"
    )]
    TooLong {
        /// The largest position asked for.
        position: usize,
        /// Positions the model has.
        max: usize,
    },
    /// The cache holds another batch.
    #[error(
        "the cache holds {cached} sequences, input_ids has {batch}: continue a cache with the \
         batch it was filled with, or start a new KvCache"
    )]
    CacheBatch {
        /// Rows in the cache.
        cached: usize,
        /// Rows of `input_ids`.
        batch: usize,
    },
}

/// The positions of a forward's new tokens and the keys each attends.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::prelude::*;
/// use patcher_models::common::AttentionLayout;
///
/// let device = Default::default();
/// // Row 1 left-padded by two: its tokens take positions 0, 1.
/// let mask = Tensor::<NdArray, 2, Int>::from_data([[1, 1, 1, 1], [0, 0, 1, 1]], &device);
/// let layout = AttentionLayout::new([2, 4], 0, Some(&mask))?;
/// assert_eq!(layout.positions(), &[0, 1, 2, 3, 1, 1, 0, 1]);
/// # Ok::<(), patcher_models::common::DecoderInputError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionLayout {
    batch: usize,
    seq: usize,
    past: usize,
    /// `[rows, seq]`: one row shared by the batch without padding, else one per sequence.
    positions: Vec<usize>,
    /// `[batch, past + seq]`, `true` at padding; `None` without padding.
    padding: Option<Vec<bool>>,
}

impl AttentionLayout {
    /// `seq` new tokens per sequence after `past` cached ones, no padding.
    pub fn contiguous(batch: usize, seq: usize, past: usize) -> Self {
        let positions = (past..past + seq).collect();
        Self { batch, seq, past, positions, padding: None }
    }

    /// `[batch, seq]` new tokens after `past` cached positions, with the 2-D `attention_mask`
    /// (`1` keep, `0` padding) over all `past + seq` positions when given. A padded token takes
    /// position 1 and attends only itself (its output is never read); the others count the kept
    /// tokens before them.
    pub fn new<B: Backend>(
        [batch, seq]: [usize; 2],
        past: usize,
        attention_mask: Option<&Tensor<B, 2, Int>>,
    ) -> Result<Self, DecoderInputError> {
        let Some(mask) = attention_mask else {
            return Ok(Self::contiguous(batch, seq, past));
        };
        let expected = [batch, past + seq];
        if mask.dims() != expected {
            let found = mask.dims();
            return Err(DecoderInputError::MaskShape { found, expected });
        }
        let keep: Vec<bool> = mask
            .to_data()
            .convert::<i64>()
            .iter::<i64>()
            .map(|m| m != 0)
            .collect();
        if keep.iter().all(|&k| k) {
            return Ok(Self::contiguous(batch, seq, past));
        }
        let mut positions = Vec::with_capacity(batch * seq);
        for row in keep.chunks(past + seq) {
            let mut kept = 0usize;
            let counted: Vec<usize> = row
                .iter()
                .map(|&k| {
                    kept += usize::from(k);
                    if k {
                        kept - 1
                    } else {
                        1
                    }
                })
                .collect();
            positions.extend_from_slice(&counted[past..]);
        }
        let padding = Some(keep.iter().map(|&k| !k).collect());
        Ok(Self { batch, seq, past, positions, padding })
    }

    /// Fails when a position is `max` or beyond (`None`: no limit).
    pub fn check_positions(&self, max: Option<usize>) -> Result<(), DecoderInputError> {
        let position = self.positions.iter().copied().max().unwrap_or(0);
        match max {
            Some(max) if position >= max => Err(DecoderInputError::TooLong { position, max }),
            _ => Ok(()),
        }
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// New tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.seq
    }

    /// Cached positions before them.
    pub fn past_len(&self) -> usize {
        self.past
    }

    /// The new tokens' positions, `[rows, seq]` row-major: one row shared by the batch, or one per
    /// sequence when padded.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    /// Rows of [`positions`](Self::positions).
    pub fn position_rows(&self) -> usize {
        self.positions.len() / self.seq.max(1)
    }

    /// The boolean mask, `true` where a query may **not** attend a key, `[1 or batch, 1, seq,
    /// past + seq]`: keys after the query, `window` or more positions before it (a sliding
    /// window), and padding. `None` when every query attends every key (one new token, no
    /// padding, no window reached).
    pub fn mask<B: Backend>(
        &self,
        window: Option<usize>,
        device: &B::Device,
    ) -> Option<Tensor<B, 4, Bool>> {
        let (seq, keys) = (self.seq, self.past + self.seq);
        let rows = if self.padding.is_some() {
            self.batch
        } else {
            1
        };
        let mut masked = Vec::with_capacity(rows * seq * keys);
        for b in 0..rows {
            for q in self.past..keys {
                for k in 0..keys {
                    let future = k > q;
                    let too_far = window.is_some_and(|w| q >= k + w);
                    let padding = self
                        .padding
                        .as_ref()
                        .is_some_and(|p| p[b * keys + k] && k != q);
                    masked.push(future || too_far || padding);
                }
            }
        }
        if !masked.contains(&true) {
            return None;
        }
        let data = TensorData::new(masked, [rows, 1, seq, keys]);
        Some(Tensor::from_data(data, device))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;

    use super::*;

    type B = NdArray;

    fn masked(layout: &AttentionLayout, window: Option<usize>) -> Option<Vec<bool>> {
        let mask = layout.mask::<B>(window, &Default::default())?;
        Some(mask.to_data().iter::<bool>().collect())
    }

    #[test]
    fn causal_and_sliding_masks() {
        let layout = AttentionLayout::contiguous(1, 3, 0);
        let full = [false, true, true, false, false, true, false, false, false];
        assert_eq!(masked(&layout, None).unwrap(), full);
        let sliding = [false, true, true, false, false, true, true, false, false];
        assert_eq!(masked(&layout, Some(2)).unwrap(), sliding);
        // One new token after three cached: it sees them all, unless the window ends.
        let step = AttentionLayout::contiguous(2, 1, 3);
        assert_eq!(step.positions(), &[3]);
        assert!(masked(&step, None).is_none());
        assert_eq!(masked(&step, Some(2)).unwrap(), [true, true, false, false]);
    }

    #[test]
    fn padding_hides_keys_and_counts_positions() {
        let device = Default::default();
        let mask = Tensor::<B, 2, Int>::from_data([[0, 1, 1], [1, 1, 1]], &device);
        let layout = AttentionLayout::new([2, 1], 2, Some(&mask)).unwrap();
        assert_eq!(layout.positions(), &[1, 2]);
        assert_eq!(
            masked(&layout, None).unwrap(),
            [true, false, false, false, false, false]
        );
        let wrong = AttentionLayout::new([2, 2], 2, Some(&mask));
        let expected = [2, 4];
        assert_eq!(
            wrong,
            Err(DecoderInputError::MaskShape { found: [2, 3], expected })
        );
    }
}
