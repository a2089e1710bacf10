//! The kit with its host kernels (`patcher-kernels`) and without them: on Flex and NdArray, every
//! decoder family, unpatched and patched, gives transformers' logits and hidden states either way,
//! and the two runs agree within 1e-5 (the kernels change only the `exp` of SiLU and softmax, and
//! the order of the attention's sums).

use crate::common::parity::parity;
use crate::common::{fixtures, input_ids, read_reference};
use burn::backend::NdArray;
use burn::prelude::*;
use patcher_burn::LoadOptions;
use patcher_models::auto::AutoModelForCausalLm;
use patcher_models::kernels::{self, HostBackend};
use patcher_models::replacements::Patch;

const TOLERANCE: f32 = 1e-4;

fn with_and_without_kernels<B: Backend>() {
    assert!(
        HostBackend::of::<B>().is_some() && kernels::enabled(),
        "the kernels are built for {} and on",
        B::name(&Default::default())
    );
    let device = Default::default();
    let auto = AutoModelForCausalLm::<B>::new();
    for (dir, patch) in [
        ("llama", Patch::NONE),
        ("llama", Patch::fused_qkv()),
        ("qwen2_moe", Patch::NONE),
        ("qwen2_moe", Patch::seed()),
        ("mixtral", Patch::NONE),
        ("mixtral_fused", Patch::seed()),
        ("gpt2", Patch::NONE),
    ] {
        let path = fixtures().join(dir);
        let reference = read_reference(&path);
        let loaded = auto
            .from_pretrained(&path, patch, &device, &LoadOptions::default())
            .unwrap();
        let model = loaded.causal_lm();
        let ids = || input_ids::<B>(&reference, &device);
        let on = model.forward_with_hidden_states(ids());
        let off = kernels::disabled(|| model.forward_with_hidden_states(ids()));
        for (label, out) in [("kernels", &on), ("Burn's ops", &off)] {
            let p = parity(
                &out.logits,
                out.hidden_states.as_deref().unwrap(),
                &reference,
            );
            assert!(
                p.max() <= TOLERANCE,
                "{dir} {patch} with {label}: {} from transformers'",
                p.max()
            );
        }
        let diff: f32 = (on.logits - off.logits).abs().max().into_scalar().elem();
        assert!(
            diff <= 1e-5,
            "{dir} {patch}: kernels vs Burn's ops {diff:.3e}"
        );
    }
}

#[cfg(feature = "flex")]
#[test]
fn flex_with_and_without_kernels() {
    with_and_without_kernels::<burn::backend::Flex>();
}

#[test]
fn ndarray_with_and_without_kernels() {
    with_and_without_kernels::<NdArray>();
}
