//! Tied embeddings (`tie_word_embeddings: true`, as in most small hub models): the checkpoint
//! holds `model.embed_tokens.weight` only, and it is also the LM head. The unpatched and the
//! fused-QKV model load it with parity, training updates the one shared parameter, and saving
//! writes it once (byte-identical to transformers' file).

use crate::common::parity::assert_parity;
use crate::common::{fixtures, input_ids, read_reference};
use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use patcher_burn::{model_params, save_pretrained};
use patcher_core::Checkpoint;
use patcher_models::llama::{LlamaConfig, LlamaForCausalLm};
use patcher_models::prelude::*;
use patcher_models::replacements::Patch;

const TOLERANCE: f32 = 1e-4;

fn load_and_check<B: Backend>(fused_qkv: bool, device: &B::Device) {
    let dir = fixtures().join("llama_tied");
    let config = LlamaConfig::from_file(dir.join("config.json")).unwrap();
    assert!(config.core.tie_word_embeddings);
    let patch = if fused_qkv {
        Patch::fused_qkv()
    } else {
        Patch::NONE
    };
    let patcher = patch.patcher(&config).unwrap();
    let loaded = Pretrained::<B>::from_path(&dir)
        .patcher(&patcher)
        .load::<LlamaForCausalLm<B>>(device)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    // One parameter for both ends of the model.
    let names: Vec<String> = model_params(&loaded.model)
        .into_iter()
        .map(|p| p.torch_name)
        .collect();
    assert!(names.contains(&"model.embed_tokens.weight".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("lm_head")), "{names:?}");

    let reference = read_reference(&dir);
    let out = loaded
        .model
        .forward_with_hidden_states(input_ids::<B>(&reference, device));
    assert_parity(
        &format!("llama_tied fused_qkv={fused_qkv}"),
        &out,
        &reference,
        TOLERANCE,
    );

    // Saved back through the conversions it was loaded with: the one tensor, once, and the
    // file transformers wrote, byte for byte.
    let out_dir = tempfile::tempdir().unwrap();
    save_pretrained(&loaded, out_dir.path()).unwrap();
    let saved = Checkpoint::open(out_dir.path()).unwrap();
    let original = Checkpoint::open(&dir).unwrap();
    assert_eq!(
        saved.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read(out_dir.path().join("model.safetensors")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
    );
}

#[test]
fn tied_checkpoint_loads_and_saves_once_on_ndarray() {
    load_and_check::<NdArray>(false, &Default::default());
    load_and_check::<NdArray>(true, &Default::default());
}

#[cfg(feature = "wgpu")]
#[test]
fn tied_checkpoint_loads_and_saves_once_on_wgpu() {
    load_and_check::<burn::backend::Wgpu>(false, &Default::default());
    load_and_check::<burn::backend::Wgpu>(true, &Default::default());
}

/// The float parameters that received a gradient, by Burn path.
fn with_gradient<B: AutodiffBackend, M: Module<B>>(model: &M, grads: &B::Gradients) -> Vec<String> {
    struct Visit<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        path: Vec<String>,
        found: Vec<String>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Visit<'_, B> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if param.val().grad(self.grads).is_some() {
                self.found.push(self.path.join("."));
            }
        }
    }
    let mut visit = Visit { grads, path: Vec::new(), found: Vec::new() };
    model.visit(&mut visit);
    visit.found
}

#[test]
fn training_updates_the_one_shared_parameter() {
    type B = Autodiff<NdArray>;
    let device = Default::default();
    let dir = fixtures().join("llama_tied");
    let loaded = Pretrained::<B>::from_path(&dir)
        .load::<LlamaForCausalLm<B>>(&device)
        .unwrap();
    let reference = read_reference(&dir);
    let logits = loaded.model.forward(input_ids::<B>(&reference, &device));
    let grads = logits.sum().backward();
    let found = with_gradient(&loaded.model, &grads);
    assert!(
        found.contains(&"model.embed_tokens.weight".to_string()),
        "{found:?}"
    );
    assert!(!found.iter().any(|p| p.starts_with("lm_head")), "{found:?}");
    // The embedding's gradient has the LM head's part: tokens that are not in the input get one
    // too (through the logits), which an input-only embedding would not give.
    let weight = &loaded.model.model.embed_tokens.weight;
    let grad = weight.val().grad(&grads).unwrap();
    let unused = (0..weight.val().dims()[0] as i64)
        .find(|t| !reference.input_ids.contains(t))
        .expect("a token id not in the input");
    let row: Vec<f32> = grad
        .narrow(0, unused as usize, 1)
        .into_data()
        .to_vec()
        .unwrap();
    assert!(
        row.iter().any(|g| *g != 0.0),
        "row {unused} got no gradient"
    );
}
