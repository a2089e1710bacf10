//! The models train: on `Autodiff<NdArray>`, gradients reach every parameter that the forward
//! uses, through slots, the replacements and the router (whose top-k weights are gathered on the
//! device, so they stay differentiable as in transformers); `valid()` gives the same outputs.

use std::collections::BTreeSet;

use crate::common::{fixtures, ModulePath};
use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;

type Inner = NdArray<f32>;
type B = Autodiff<Inner>;

struct WithGrad<'a> {
    grads: &'a <B as AutodiffBackend>::Gradients,
    path: ModulePath,
    with: BTreeSet<String>,
    without: BTreeSet<String>,
}

impl ModuleVisitor<B> for WithGrad<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let path = self.path.key();
        if param.val().grad(self.grads).is_some() {
            self.with.insert(path);
        } else {
            self.without.insert(path);
        }
    }
}

#[test]
fn gradients_reach_patched_parameters_and_the_router() {
    let device = Default::default();
    let config = Qwen2MoeConfig::from_file(fixtures().join("qwen2_moe/config.json")).unwrap();
    let model = Qwen2MoeForCausalLm::<B>::with_patcher(
        &config,
        &Patch::seed().patcher(&config).unwrap(),
        &device,
    )
    .unwrap();
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(
            (0..28).map(|i| (i * 37 % 128) as i64).collect::<Vec<_>>(),
            [2, 14],
        ),
        &device,
    );
    let logits = model.forward(ids.clone());
    let grads = logits.clone().sum().backward();
    let mut visitor = WithGrad {
        grads: &grads,
        path: ModulePath::default(),
        with: BTreeSet::new(),
        without: BTreeSet::new(),
    };
    model.visit(&mut visitor);
    for expected in [
        "model.layers.0.mlp.gate.weight",
        "model.layers.0.self_attn.qkv_proj.weight",
        "model.layers.0.self_attn.qkv_proj.bias",
        "model.layers.1.mlp.shared_expert_gate.weight",
        "model.embed_tokens.weight",
        "lm_head.weight",
    ] {
        assert!(
            visitor.with.contains(expected),
            "no gradient for {expected}"
        );
    }
    assert!(visitor
        .with
        .iter()
        .any(|p| p.starts_with("model.layers.0.mlp.experts.") && p.ends_with("gate_proj.weight")));
    // Only experts that no token was routed to may lack a gradient.
    for path in &visitor.without {
        assert!(path.contains(".mlp.experts."), "no gradient for {path}");
    }

    let valid = model.valid();
    let ids_inner = ids.inner();
    let inner_logits = valid.forward(ids_inner);
    let diff = (inner_logits - logits.inner()).abs().max().into_scalar();
    // The same weights, not the same kernels: on NdArray itself SiLU runs on the host
    // (`common::cpu`, a vectorised `exp` an ulp or so from libm's), under `Autodiff` Burn's ops.
    // Logits of about 1 agree to a few ulps; a lost or altered weight moves them by far more.
    assert!(diff <= 1e-5, "valid() changed the outputs by {diff}");
}
