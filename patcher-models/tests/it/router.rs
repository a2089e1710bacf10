//! Routing rules of `Qwen2MoeTopKRouter`: PyTorch's CPU tie order, `norm_topk_prob`.

use crate::common::fixtures;
use burn::backend::NdArray;
use burn::module::Param;
use burn::prelude::*;
use patcher_models::common::MoeRouter;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeTopKRouter};

type B = NdArray<f32>;

fn config(norm_topk_prob: bool) -> Qwen2MoeConfig {
    let mut config = Qwen2MoeConfig::from_file(fixtures().join("qwen2_moe/config.json")).unwrap();
    config.norm_topk_prob = norm_topk_prob;
    config
}

#[test]
fn ties_follow_torch_topk_on_the_cpu() {
    let device = Default::default();
    let config = config(false);
    let mut router = Qwen2MoeTopKRouter::<B>::new(&config.router_spec(), &device);
    // A zero router: every probability is 1/4; torch.topk(k=2) picks experts 2 and 3.
    router.weight = Param::from_tensor(Tensor::zeros(
        [config.num_experts, config.core.hidden_size],
        &device,
    ));
    let x = Tensor::<B, 2>::ones([3, config.core.hidden_size], &device);
    let out = router.forward(x);
    let index: Vec<i64> = out.top_k_index.to_data().iter::<i64>().collect();
    assert_eq!(index, vec![2, 3, 2, 3, 2, 3]);
    let weights: Vec<f32> = out.top_k_weights.to_data().iter::<f32>().collect();
    assert!(weights.iter().all(|&w| w == 0.25));
}

#[test]
fn norm_topk_prob_renormalises() {
    let device = Default::default();
    let x = Tensor::<B, 2>::random(
        [5, 64],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let plain = Qwen2MoeTopKRouter::<B>::new(&config(false).router_spec(), &device);
    let mut normed = Qwen2MoeTopKRouter::<B>::new(&config(true).router_spec(), &device);
    // A lazy parameter cloned before use would initialise twice: share the value.
    normed.weight = Param::from_tensor(plain.weight.val());
    let a = plain.forward(x.clone());
    let b = normed.forward(x);
    assert_eq!(a.top_k_index.to_data(), b.top_k_index.to_data());
    let expected = a.top_k_weights.clone() / a.top_k_weights.sum_dim(1);
    let diff = (expected - b.top_k_weights.clone())
        .abs()
        .max()
        .into_scalar();
    assert!(diff < 1e-7);
    let sums: Vec<f32> = b.top_k_weights.sum_dim(1).to_data().iter::<f32>().collect();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6));
}
