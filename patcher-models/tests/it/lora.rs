//! Every `Linear` of Llama replaced by a LoRA linear (a leaf slot), loaded from the stock
//! checkpoint: the base weights land in the frozen base layers, the adapters stay as
//! initialized, the logits equal the unpatched model's (and transformers'), and SGD steps on
//! `Autodiff<NdArray>` change the adapters and nothing else.

use std::collections::BTreeMap;

use crate::common::{fixtures, input_ids, read_reference};
use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use patcher_burn::{list_slots, LoadOptions, Patcher};
use patcher_models::llama::{LlamaForCausalLm, LINEAR_NAMES};
use patcher_models::prelude::*;
use patcher_models::replacements::{lora_patcher, OnlyLoraTrainable, LORA_PARAMETERS};

type Inner = NdArray<f32>;
type B = Autodiff<Inner>;

fn load<Be: Backend>(
    patcher: &Patcher<Be>,
    options: &LoadOptions,
) -> patcher_burn::Loaded<LlamaForCausalLm<Be>> {
    Pretrained::<Be>::from_path(fixtures().join("llama"))
        .patcher(patcher)
        .options(options.clone())
        .load::<LlamaForCausalLm<Be>>(&Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn lora_options() -> LoadOptions {
    LoadOptions::default().ignore_missing([LORA_PARAMETERS])
}

fn values<Be: Backend, const D: usize>(t: Tensor<Be, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Every float parameter's values, by Burn path.
fn snapshot<M: Module<B>>(model: &M) -> BTreeMap<String, Vec<f32>> {
    struct Snapshot {
        path: Vec<String>,
        out: BTreeMap<String, Vec<f32>>,
    }
    impl ModuleVisitor<B> for Snapshot {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out.insert(self.path.join("."), values(param.val()));
        }
    }
    let mut snapshot = Snapshot { path: Vec::new(), out: BTreeMap::new() };
    model.visit(&mut snapshot);
    snapshot.out
}

#[test]
fn lora_on_every_linear_loads_the_stock_checkpoint_and_equals_the_unpatched_model() {
    let plain = load::<Inner>(&Patcher::new(), &LoadOptions::default());
    let lora = load::<Inner>(
        &lora_patcher::<Inner, 4>(&LINEAR_NAMES).unwrap(),
        &lora_options(),
    );

    // Every Linear slot holds a LoRA linear: 7 per layer and the head.
    let slots = list_slots(&lora.model);
    let linears: Vec<_> = slots
        .iter()
        .filter(|s| s.original_class == "Linear")
        .collect();
    let layers = lora.model.model.layers.len();
    assert_eq!(linears.len(), 7 * layers + 1);
    assert!(linears
        .iter()
        .all(|s| s.class == "LoraLinear" && s.replaced));
    assert!(lora.report.missing.is_empty());
    assert_eq!(lora.report.missing_ignored.len(), 2 * linears.len());
    assert!(lora.report.missing_ignored[0].ends_with(".lora_a.weight"));

    // The base weights are the checkpoint's: the logits equal the unpatched model's exactly
    // (the adapters add lora_b = 0), and transformers' within the parity bound.
    let reference = read_reference(&fixtures().join("llama"));
    let ids = input_ids::<Inner>(&reference, &Default::default());
    let expected = values(plain.model.forward(ids.clone()));
    let actual = values(lora.model.forward(ids));
    assert_eq!(actual, expected);
    let worst = actual
        .iter()
        .zip(&reference.logits.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "max |logits - transformers| = {worst}");

    // Without ignoring the adapters, a strict load says exactly what is missing.
    let err = Pretrained::<Inner>::from_path(fixtures().join("llama"))
        .patcher(&lora_patcher::<Inner, 4>(&LINEAR_NAMES).unwrap())
        .load::<LlamaForCausalLm<Inner>>(&Default::default())
        .expect_err("the adapters are not in the checkpoint");
    assert!(err.to_string().contains("lora_a.weight"), "{err}");
}

#[test]
fn sgd_steps_change_the_adapters_and_nothing_else() {
    let loaded = load::<B>(
        &lora_patcher::<B, 4>(&LINEAR_NAMES).unwrap(),
        &lora_options(),
    );
    let mut model = loaded.model.map(&mut OnlyLoraTrainable::default());
    let before = snapshot(&model);
    let reference = read_reference(&fixtures().join("llama"));
    let ids = input_ids::<B>(&reference, &Default::default());
    let mut optimizer = SgdConfig::new().init();
    let mut step = |model: LlamaForCausalLm<B>| {
        let loss = model.forward(ids.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optimizer.step(0.5, model, grads)
    };
    // Two steps: with lora_b = 0 the first moves only lora_b (lora_a's gradient goes through
    // lora_b), the second moves lora_a too.
    model = step(model);
    model = step(model);
    let after = snapshot(&model);

    let (mut adapters, mut others) = (0, 0);
    for (path, old) in &before {
        let new = &after[path];
        if path.contains(".lora_a.") || path.contains(".lora_b.") {
            adapters += 1;
            assert_ne!(old, new, "{path} did not train");
        } else {
            others += 1;
            assert_eq!(old, new, "{path} changed");
        }
    }
    let linears = 7 * model.model.layers.len() + 1;
    assert_eq!(adapters, 2 * linears);
    assert!(
        others > linears,
        "base layers, norms and embeddings are checked too"
    );
    // The base layers were frozen by the class itself, before the mapper.
    assert!(before
        .keys()
        .any(|p| p.ends_with("q_proj.base_layer.weight")));
}
