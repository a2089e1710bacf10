//! Which tokens each expert processes, in transformers' eager order.
//!
//! transformers' eager experts loop builds `expert_mask = one_hot(top_k_index).permute(2, 1, 0)`
//! and, for each expert that was hit (ascending), takes `top_k_pos, token_idx =
//! torch.where(expert_mask[expert])`: the pairs in (top-k position, token) order. Every expert
//! implementation here goes through this plan so they add contributions in the same order.

use burn::prelude::*;

/// The tokens routed to one expert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpertAssignment {
    /// The expert.
    pub expert: usize,
    /// Token rows (into the flattened `[tokens, hidden]` input), in transformers' order.
    pub token_idx: Vec<usize>,
    /// For each token, its slot in the top-k (the column of `top_k_weights`).
    pub top_k_pos: Vec<usize>,
}

/// The routing plan of one MoE layer, computed on the host from `top_k_index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpertDispatch {
    /// Number of tokens.
    pub num_tokens: usize,
    /// `k`.
    pub top_k: usize,
    /// One entry per expert that received at least one token, ascending.
    pub assignments: Vec<ExpertAssignment>,
}

impl ExpertDispatch {
    /// The plan for `top_k_index` `[tokens, k]` (row-major) over `num_experts` experts. Indices
    /// `>= num_experts` are skipped, as transformers skips its expert-parallel sentinel.
    pub fn from_indices(top_k_index: &[usize], top_k: usize, num_experts: usize) -> Self {
        let num_tokens = top_k_index.len().checked_div(top_k).unwrap_or(0);
        let mut assignments: Vec<ExpertAssignment> = (0..num_experts)
            .map(|expert| ExpertAssignment { expert, token_idx: Vec::new(), top_k_pos: Vec::new() })
            .collect();
        for pos in 0..top_k {
            for token in 0..num_tokens {
                let expert = top_k_index[token * top_k + pos];
                if let Some(a) = assignments.get_mut(expert) {
                    a.token_idx.push(token);
                    a.top_k_pos.push(pos);
                }
            }
        }
        assignments.retain(|a| !a.token_idx.is_empty());
        Self { num_tokens, top_k, assignments }
    }

    /// Reads `top_k_index` `[tokens, k]` back from the device (one synchronisation, as
    /// transformers' `nonzero` is) and builds the plan.
    pub fn from_tensor<B: Backend>(top_k_index: &Tensor<B, 2, Int>, num_experts: usize) -> Self {
        let [_, top_k] = top_k_index.dims();
        let indices: Vec<usize> = top_k_index
            .to_data()
            .iter::<i64>()
            .map(|i| usize::try_from(i).unwrap_or(usize::MAX))
            .collect();
        Self::from_indices(&indices, top_k, num_experts)
    }

    /// Every assignment's `token_idx`, expert after expert, as one device tensor: the rows of
    /// the experts' inputs gathered at once, and where their outputs go back.
    pub fn token_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        let tokens = self.assignments.iter().flat_map(|a| &a.token_idx);
        index_tensor(tokens.map(|&t| t as i64).collect(), device)
    }

    /// Every assignment's routing weights in the order of [`Self::token_tensor`], `[n]`.
    pub fn weights<B: Backend>(&self, top_k_weights: &Tensor<B, 2>) -> Tensor<B, 1> {
        routing_weights(
            top_k_weights,
            self.assignments.iter().flat_map(ExpertAssignment::pairs),
        )
    }
}

impl ExpertAssignment {
    /// `(token, top-k position)` pairs.
    fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.token_idx
            .iter()
            .copied()
            .zip(self.top_k_pos.iter().copied())
    }
}

/// `indices` as a 1-D device tensor.
fn index_tensor<B: Backend>(indices: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = indices.len();
    Tensor::from_data(TensorData::new(indices, [n]), device)
}

/// `top_k_weights[token, pos]` for each `(token, pos)` pair, `[n]`.
fn routing_weights<B: Backend>(
    top_k_weights: &Tensor<B, 2>,
    pairs: impl Iterator<Item = (usize, usize)>,
) -> Tensor<B, 1> {
    let [tokens, top_k] = top_k_weights.dims();
    let flat = pairs.map(|(t, p)| (t * top_k + p) as i64).collect();
    let flat = index_tensor(flat, &top_k_weights.device());
    top_k_weights
        .clone()
        .reshape([tokens * top_k])
        .select(0, flat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_position_then_token() {
        // tokens: 0 -> (2, 0), 1 -> (0, 1), 2 -> (2, 1)
        let plan = ExpertDispatch::from_indices(&[2, 0, 0, 1, 2, 1], 2, 4);
        let experts: Vec<usize> = plan.assignments.iter().map(|a| a.expert).collect();
        assert_eq!(experts, vec![0, 1, 2]);
        assert_eq!(plan.assignments[0].token_idx, vec![1, 0]);
        assert_eq!(plan.assignments[0].top_k_pos, vec![0, 1]);
        assert_eq!(plan.assignments[1].token_idx, vec![1, 2]);
        assert_eq!(plan.assignments[2].token_idx, vec![0, 2]);
        assert_eq!(plan.assignments[2].top_k_pos, vec![0, 0]);
    }

    #[test]
    fn skips_out_of_range_experts() {
        let plan = ExpertDispatch::from_indices(&[4, 1], 1, 4);
        assert_eq!(plan.assignments.len(), 1);
        assert_eq!(plan.assignments[0].token_idx, vec![1]);
    }
}
