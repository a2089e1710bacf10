//! The kit's GPT-2 `Conv1D` against transformers' (`pytorch_utils.Conv1D`, `x @ W + b`): a stock
//! checkpoint's `c_attn` (8 -> 24) and square `c_proj` (8 -> 8) load with no conversion and give
//! transformers' outputs (`tests/fixtures/conv1d`, written by `scripts/make_fixtures.py`). A
//! square weight is where a missing transpose loads "clean" with wrong numbers.

use std::path::PathBuf;

use burn::backend::NdArray;
use burn::prelude::*;
use patcher_burn::layers::{Conv1D, Conv1DConfig};
use patcher_burn::{Pretrained, PretrainedModel};
use safetensors::SafeTensors;

use crate::common::values;

type B = NdArray;

/// GPT-2's attention projections, both `Conv1D`; no conversion of any kind.
#[derive(Module, Debug)]
struct Gpt2Projections<B: Backend> {
    c_attn: Conv1D<B>,
    c_proj: Conv1D<B>,
}

impl<B: Backend> PretrainedModel<B> for Gpt2Projections<B> {}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/conv1d")
}

/// `name` of the safetensors `file` (all F32 here): its shape and values.
fn read_f32(file: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let view = file.tensor(name).unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
    let data = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), data)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[test]
fn gpt2_conv1d_loads_a_stock_checkpoint_with_transformers_outputs() {
    let device = Default::default();
    let model = Gpt2Projections::<B> {
        c_attn: Conv1DConfig::new(8, 24).init(&device),
        c_proj: Conv1DConfig::new(8, 8).init(&device),
    };
    let path = fixture().join("model.safetensors");
    let loaded = Pretrained::from_path(&path).load_into(&model).unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    assert_eq!(loaded.report.loaded, 4, "{}", loaded.report);

    // As stored: the checkpoint's `[in, out]` weights are the parameters, element for element.
    let weights = std::fs::read(&path).unwrap();
    let weights = SafeTensors::deserialize(&weights).unwrap();
    let m = &loaded.model;
    for (name, weight, bias) in [
        ("c_attn", m.c_attn.weight.val(), m.c_attn.bias.val()),
        ("c_proj", m.c_proj.weight.val(), m.c_proj.bias.val()),
    ] {
        let (shape, stored) = read_f32(&weights, &format!("{name}.weight"));
        assert_eq!(weight.dims().to_vec(), shape, "{name}");
        assert_eq!(values(weight), stored, "{name}");
        assert_eq!(values(bias), read_f32(&weights, &format!("{name}.bias")).1);
    }

    // transformers' outputs on the same input.
    let reference = std::fs::read(fixture().join("reference.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&reference).unwrap();
    let (shape, input) = read_f32(&reference, "input");
    let x = Tensor::<B, 1>::from_floats(input.as_slice(), &device)
        .reshape([shape[0], shape[1], shape[2]]);
    for (name, out) in [
        ("c_attn", m.c_attn.forward(x.clone())),
        ("c_proj", m.c_proj.forward(x.clone())),
    ] {
        let (shape, expected) = read_f32(&reference, &format!("{name}.output"));
        assert_eq!(out.dims().to_vec(), shape, "{name}");
        let max = max_abs_diff(&values(out), &expected);
        assert!(max <= 1e-5, "{name}: max abs diff {max} from transformers");
    }
    // The square weight transposed (what a `Linear` without a Transpose conversion computes)
    // is far off: the comparison above tells the two layouts apart.
    let transposed = x.matmul(m.c_proj.weight.val().transpose().unsqueeze::<3>())
        + m.c_proj.bias.val().unsqueeze::<3>();
    let expected = read_f32(&reference, "c_proj.output").1;
    let off = max_abs_diff(&values(transposed), &expected);
    assert!(off > 0.1, "transposed c_proj is only {off} off");
}
