//! The PyTorch layout step as user modules extend it: a GPT-2-style `Conv1D` (weight stored
//! `[in, out]`, as-is) next to a regular `Linear` (transposed), and a norm whose fields are
//! `scale`/`shift` where PyTorch says `weight`/`bias`; loaded, saved back, and refused when the
//! types are not registered.

use std::collections::HashMap;

use crate::common::*;
use burn::backend::NdArray;
use burn::module::{Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use patcher_burn::{
    load_with, model_params_with, save_model, save_pretrained, Layout, LoadError, LoadOptions,
    LoadSpec, Pretrained, PretrainedModel, SaveOptions, TorchLayout, TorchLayouts,
};
use patcher_core::{Checkpoint, HostTensor};

type B = NdArray;

const IN: usize = 4;
const OUT: usize = 6;

/// GPT-2's `Conv1D`: PyTorch stores the weight `[in, out]`, the layout Burn's matmul takes.
#[derive(Module, Debug)]
struct Conv1D<B: Backend> {
    weight: Param<Tensor<B, 2>>,
    bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> TorchLayout for Conv1D<B> {
    const MODULE_NAME: &'static str = "Conv1D";

    fn torch_param(field: &str, _rank: usize) -> Option<(&'static str, Layout)> {
        (field == "weight").then_some(("weight", Layout::Same))
    }
}

/// A norm of its own, whose PyTorch twin calls its parameters `weight` and `bias`.
#[derive(Module, Debug)]
struct ScaleShift<B: Backend> {
    scale: Param<Tensor<B, 1>>,
    shift: Param<Tensor<B, 1>>,
}

impl<B: Backend> TorchLayout for ScaleShift<B> {
    const MODULE_NAME: &'static str = "ScaleShift";

    fn torch_param(field: &str, _rank: usize) -> Option<(&'static str, Layout)> {
        match field {
            "scale" => Some(("weight", Layout::Same)),
            "shift" => Some(("bias", Layout::Same)),
            _ => None,
        }
    }
}

#[derive(Module, Debug)]
struct Block<B: Backend> {
    c_attn: Conv1D<B>,
    c_proj: Linear<B>,
    ln: ScaleShift<B>,
}

impl<B: Backend> PretrainedModel<B> for Block<B> {
    fn torch_layouts() -> TorchLayouts {
        TorchLayouts::default()
            .with::<Conv1D<B>>()
            .with::<ScaleShift<B>>()
    }
}

fn param<const D: usize>(shape: [usize; D]) -> Param<Tensor<B, D>> {
    Param::initialized(ParamId::new(), Tensor::zeros(shape, &Default::default()))
}

fn block() -> Block<B> {
    Block {
        c_attn: Conv1D { weight: param([IN, OUT]), bias: param([OUT]) },
        // nn.Linear(OUT, IN): PyTorch weight [IN, OUT], Burn's [OUT, IN].
        c_proj: LinearConfig::new(OUT, IN).init(&Default::default()),
        ln: ScaleShift { scale: param([IN]), shift: param([IN]) },
    }
}

/// The checkpoint as PyTorch saves it, every value distinct.
fn checkpoint() -> HashMap<String, HostTensor<'static>> {
    let shapes: [(&str, &[usize]); 6] = [
        ("c_attn.weight", &[IN, OUT]),
        ("c_attn.bias", &[OUT]),
        ("c_proj.weight", &[IN, OUT]),
        ("c_proj.bias", &[IN]),
        ("ln.weight", &[IN]),
        ("ln.bias", &[IN]),
    ];
    let mut next = 0.0;
    shapes
        .into_iter()
        .map(|(key, shape)| {
            let values: Vec<f32> = (0..shape.iter().product())
                .map(|_| {
                    next += 0.25;
                    next
                })
                .collect();
            (key.to_string(), HostTensor::from_f32(shape, &values))
        })
        .collect()
}

fn file(tensors: &HashMap<String, HostTensor<'static>>, key: &str) -> Vec<f32> {
    tensor_values(&tensors[key])
}

/// The keys of the safetensors file at `path`, sorted, with their values.
fn read(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let checkpoint = Checkpoint::open(path).unwrap();
    let mut keys: Vec<String> = checkpoint.keys().map(str::to_string).collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(|k| {
            let values = tensor_values(&checkpoint.get(&k).unwrap().read().unwrap());
            (k, values)
        })
        .collect()
}

#[test]
fn registered_layouts_put_each_value_in_its_param() {
    let dir = TempDir::new("layouts");
    let tensors = checkpoint();
    let path = dir.path().join("model.safetensors");
    write_checkpoint(&path, &tensors);

    let loaded = Pretrained::from_path(&path).load_into(&block()).unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    assert_eq!(loaded.layouts, Block::<B>::torch_layouts());
    let m = &loaded.model;

    // Conv1D: as stored.
    assert_eq!(
        values(m.c_attn.weight.val()),
        file(&tensors, "c_attn.weight")
    );
    assert_eq!(values(m.c_attn.bias.val()), file(&tensors, "c_attn.bias"));
    // Linear: Burn's (i, o) is PyTorch's (o, i).
    let torch = file(&tensors, "c_proj.weight");
    let burn = values(m.c_proj.weight.val());
    assert_eq!(m.c_proj.weight.val().dims(), [OUT, IN]);
    for o in 0..IN {
        for i in 0..OUT {
            assert_eq!(burn[i * IN + o], torch[o * OUT + i]);
        }
    }
    // The norm: renamed.
    assert_eq!(values(m.ln.scale.val()), file(&tensors, "ln.weight"));
    assert_eq!(values(m.ln.shift.val()), file(&tensors, "ln.bias"));

    // Saved back with the same layouts: the checkpoint again.
    let saved = dir.path().join("saved.safetensors");
    save_pretrained(&loaded, &saved).unwrap();
    assert_eq!(read(&saved), read(&path));
}

#[test]
fn save_model_lays_out_with_the_layouts_it_is_given() {
    let dir = TempDir::new("layouts-save");
    let model = block();
    let keys = |options: &SaveOptions| -> Vec<String> {
        let path = dir.path().join("out.safetensors");
        save_model(&model, &path, &[], None, options).unwrap();
        read(&path).into_iter().map(|(k, _)| k).collect()
    };
    // Burn's layers only: the norm keeps Burn's names.
    assert_eq!(
        keys(&SaveOptions::default()),
        [
            "c_attn.bias",
            "c_attn.weight",
            "c_proj.bias",
            "c_proj.weight",
            "ln.scale",
            "ln.shift"
        ]
    );
    let options = SaveOptions::default().torch_layouts(Block::<B>::torch_layouts());
    assert_eq!(
        keys(&options),
        [
            "c_attn.bias",
            "c_attn.weight",
            "c_proj.bias",
            "c_proj.weight",
            "ln.bias",
            "ln.weight"
        ]
    );
}

#[test]
fn unregistered_layouts_report_missing_and_unexpected_keys() {
    let dir = TempDir::new("layouts-unregistered");
    let path = dir.path().join("model.safetensors");
    write_checkpoint(&path, &checkpoint());
    let checkpoint = Checkpoint::open(&path).unwrap();

    // Burn's layers only, as for a model that does not register its own.
    let spec = LoadSpec::default();
    let params = model_params_with(&block(), &spec.layouts);
    assert_eq!(params[4].torch_name, "ln.scale");

    let err = load_with(&block(), &checkpoint, &spec, &LoadOptions::default()).unwrap_err();
    let LoadError::Incomplete { report } = err else {
        panic!("expected an incomplete load, got {err}");
    };
    assert_eq!(report.missing, ["ln.scale", "ln.shift"]);
    assert_eq!(report.unexpected, ["ln.bias", "ln.weight"]);
    assert!(report.mismatched.is_empty(), "{report}");
}

/// A layout that asks to transpose what cannot be is ignored, never a panic.
#[test]
fn transposed_applies_to_float_matrices_only() {
    #[derive(Module, Debug)]
    struct Odd<B: Backend> {
        vector: Param<Tensor<B, 1>>,
        ids: Param<Tensor<B, 2, Int>>,
        cube: Param<Tensor<B, 3>>,
    }

    impl<B: Backend> TorchLayout for Odd<B> {
        const MODULE_NAME: &'static str = "Odd";

        fn torch_param(field: &str, _rank: usize) -> Option<(&'static str, Layout)> {
            Some(match field {
                "vector" => ("v", Layout::Transposed),
                "ids" => ("i", Layout::Transposed),
                _ => ("c", Layout::Transposed),
            })
        }
    }

    let device = Default::default();
    let odd = Odd::<B> {
        vector: param([3]),
        ids: Param::initialized(ParamId::new(), Tensor::zeros([2, 3], &device)),
        cube: param([2, 3, 4]),
    };
    let params = model_params_with(&odd, &TorchLayouts::default().with::<Odd<B>>());
    let seen: Vec<_> = params
        .iter()
        .map(|p| (p.torch_name.as_str(), p.layout, p.torch_shape.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("v", Layout::Same, vec![3]),
            ("i", Layout::Same, vec![2, 3]),
            ("c", Layout::Same, vec![2, 3, 4]),
        ]
    );
}
