//! Slots and `#[derive(Patchable)]` on a small model with two slot interfaces at different depths.
//!
//! Every check is a generic function instantiated per backend at the bottom: NdArray always,
//! Wgpu with the `wgpu` feature (Mesa lavapipe on CPU-only machines).

use crate::slot_model::*;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use burn_patcher::{
    list_slots, load_file_checked, load_record_checked, replacement, BuildContext, BuildError,
    LoadRecordError, Patcher, PatcherError, PatcherErrors, SlotInfo,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Which classes to swap.
#[derive(Clone, Copy, Debug)]
enum Swap {
    None,
    Attention,
    Both,
}

fn patcher<B: Backend>(swap: Swap) -> Patcher<B> {
    let patcher = Patcher::new();
    match swap {
        Swap::None => patcher,
        Swap::Attention => patcher.replace::<Attention<B>, FusedAttention<B>>(),
        Swap::Both => patcher
            .replace::<Attention<B>, FusedAttention<B>>()
            .class_mapping("TinyMlp", replacement::<GatedMlp<B>, dyn MlpLayer<B>>()),
    }
}

fn build<B: Backend>(swap: Swap, device: &B::Device) -> TinyModel<B> {
    BuildContext::build(&patcher::<B>(swap), device, |ctx| {
        TinyModel::new(ctx, &TinyConfig::new())
    })
    .expect("the mapping fits the model")
}

fn input<B: Backend>(device: &B::Device) -> Tensor<B, 2> {
    let values: Vec<f32> = (0..5 * INPUT).map(|i| (i as f32 * 0.37).sin()).collect();
    Tensor::<B, 1>::from_floats(values.as_slice(), device).reshape([5, INPUT])
}

fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().to_vec::<f32>().unwrap()
}

fn output<B: Backend>(model: &TinyModel<B>, device: &B::Device) -> Vec<f32> {
    values(model.forward(input(device)))
}

/// Outputs of the same parameters on a backend and on `Autodiff` of it: equal up to rounding
/// (Autodiff over Flex reaches some of Flex's kernels through other paths that sum in another
/// order: up to 5e-7 apart measured; NdArray gives equal bits).
fn assert_same_outputs(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a - e).abs() <= 1e-5 * e.abs().max(1.0),
            "{actual:?} vs {expected:?}"
        );
    }
}

/// `(path, id, values)` of every float parameter, with Burn's paths.
#[derive(Default)]
struct Params {
    path: Vec<String>,
    found: Vec<(String, ParamId, Vec<f32>)>,
}

impl<B: Backend> ModuleVisitor<B> for Params {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.found
            .push((self.path.join("."), param.id, values(param.val())));
    }
}

fn params<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, ParamId, Vec<f32>)> {
    let mut visitor = Params::default();
    module.visit(&mut visitor);
    visitor.found
}

fn param_paths<B: Backend, M: Module<B>>(module: &M) -> Vec<String> {
    params(module)
        .into_iter()
        .map(|(path, _, _)| path)
        .collect()
}

fn param<B: Backend, M: Module<B>>(module: &M, path: &str) -> (ParamId, Vec<f32>) {
    params(module)
        .into_iter()
        .find(|(p, _, _)| p == path)
        .map(|(_, id, values)| (id, values))
        .unwrap_or_else(|| panic!("no parameter {path}"))
}

fn linear_paths(prefix: &str) -> [String; 2] {
    [format!("{prefix}.weight"), format!("{prefix}.bias")]
}

fn expected_paths(swap: Swap) -> Vec<String> {
    let mut paths = linear_paths("embed").to_vec();
    for i in 0..LAYERS {
        let attn = format!("layers.{i}.self_attn");
        let projs: &[&str] = match swap {
            Swap::None => &["q_proj", "k_proj", "v_proj", "o_proj"],
            _ => &["qkv_proj", "o_proj"],
        };
        for proj in projs {
            paths.extend(linear_paths(&format!("{attn}.{proj}")));
        }
    }
    for mlp in ["mlp", "final_mlp"] {
        let projs: &[&str] = match swap {
            Swap::Both => &["gate_up", "down"],
            _ => &["up", "down"],
        };
        for proj in projs {
            paths.extend(linear_paths(&format!("{mlp}.{proj}")));
        }
    }
    paths.extend(linear_paths("head"));
    paths
}

fn linear_params(d_in: usize, d_out: usize) -> usize {
    d_in * d_out + d_out
}

fn expected_num_params(swap: Swap) -> usize {
    let attention = match swap {
        Swap::None => 4 * linear_params(HIDDEN, HIDDEN),
        _ => linear_params(HIDDEN, 3 * HIDDEN) + linear_params(HIDDEN, HIDDEN),
    };
    let mlp = match swap {
        Swap::Both => linear_params(HIDDEN, 2 * FFN) + linear_params(FFN, HIDDEN),
        _ => linear_params(HIDDEN, FFN) + linear_params(FFN, HIDDEN),
    };
    linear_params(INPUT, HIDDEN) + LAYERS * attention + 2 * mlp + linear_params(HIDDEN, OUTPUT)
}

fn slot(path: &str, class: &str, original: &str, interface: &str) -> SlotInfo {
    SlotInfo {
        path: path.to_string(),
        class: class.to_string(),
        original_class: original.to_string(),
        replaced: class != original,
        interface: interface.to_string(),
    }
}

fn expected_slots(swap: Swap) -> Vec<SlotInfo> {
    let attn = match swap {
        Swap::None => "TinyAttention",
        _ => "FusedAttention",
    };
    let mlp = match swap {
        Swap::Both => "GatedMlp",
        _ => "TinyMlp",
    };
    let mut slots: Vec<SlotInfo> = (0..LAYERS)
        .flat_map(|i| {
            [
                slot(
                    &format!("layers.{i}"),
                    "TinyLayer",
                    "TinyLayer",
                    "DecoderLayer",
                ),
                slot(
                    &format!("layers.{i}.self_attn"),
                    attn,
                    "TinyAttention",
                    "AttentionLayer",
                ),
            ]
        })
        .collect();
    slots.push(slot("mlp", mlp, "TinyMlp", "MlpLayer"));
    slots.push(slot("final_mlp", mlp, "TinyMlp", "MlpLayer"));
    slots
}

// ---------------------------------------------------------------------------------------------
// Checks, generic over the backend

/// Unpatched, attention swapped, both swapped: classes, parameter paths and counts, forward.
fn structure<B: Backend>(device: &B::Device) {
    for swap in [Swap::None, Swap::Attention, Swap::Both] {
        let model = build::<B>(swap, device);
        assert_eq!(list_slots(&model), expected_slots(swap), "{swap:?}");
        assert_eq!(param_paths(&model), expected_paths(swap), "{swap:?}");
        assert_eq!(model.num_params(), expected_num_params(swap), "{swap:?}");
        let out = output(&model, device);
        assert_eq!(out.len(), 5 * OUTPUT);
        assert!(out.iter().all(|v| v.is_finite()));
    }
    assert_eq!(expected_num_params(Swap::None), 1203);
    assert_eq!(expected_num_params(Swap::Both), 1491);

    let model = build::<B>(Swap::Both, device);
    assert_eq!(model.layers[1].class_name(), "TinyLayer");
    assert!(!model.layers[1].is_replaced());
    assert_eq!(model.mlp.class_name(), "GatedMlp");
    assert_eq!(model.mlp.original_class_name(), "TinyMlp");
    assert!(model.mlp.is_replaced());
    assert_eq!(model.mlp.interface_name(), "MlpLayer");
}

/// A regex key replaces every class it is found in; an exact key wins over it (else
/// `TinyAttention` would get an MLP: a wrong-interface error).
fn regex_keys<B: Backend>(device: &B::Device) {
    let patcher = Patcher::<B>::new()
        .class_mapping_regex(
            "^Tiny(Attention|Mlp)$",
            replacement::<GatedMlp<B>, dyn MlpLayer<B>>(),
        )
        .class_mapping(
            "TinyAttention",
            replacement::<FusedAttention<B>, dyn AttentionLayer<B>>(),
        );
    let model = BuildContext::build(&patcher, device, |ctx| {
        TinyModel::new(ctx, &TinyConfig::new())
    })
    .unwrap();
    assert_eq!(list_slots(&model), expected_slots(Swap::Both));
}

/// Saving with Burn's recorder and loading into a freshly built model reproduces the outputs.
fn record_round_trip<B: Backend>(device: &B::Device) {
    let dir = tempfile::tempdir().unwrap();
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    for swap in [Swap::None, Swap::Both] {
        let model = build::<B>(swap, device);
        let expected = output(&model, device);
        let file = dir.path().join(format!("{swap:?}"));
        model.clone().save_file(file.clone(), &recorder).unwrap();

        let fresh = build::<B>(swap, device);
        assert_ne!(
            output(&fresh, device),
            expected,
            "a fresh model has other weights"
        );
        let loaded = fresh.load_file(file.clone(), &recorder, device).unwrap();
        assert_eq!(output(&loaded, device), expected);
        assert_eq!(params(&loaded), params(&model), "ids and values come back");

        let checked = load_file_checked(build::<B>(swap, device), file, &recorder, device);
        assert_eq!(output(&checked.unwrap(), device), expected);
    }
}

/// burn-store sees the replacement's parameters with Burn's paths and round-trips them.
fn store_round_trip<B: Backend>(device: &B::Device) {
    use burn_store::{ModuleSnapshot, SafetensorsStore};
    let model = build::<B>(Swap::Both, device);
    let expected = output(&model, device);
    let mut store = SafetensorsStore::from_bytes(None);
    model.save_into(&mut store).unwrap();
    let bytes = store.get_bytes().unwrap();

    let mut fresh = build::<B>(Swap::Both, device);
    assert_ne!(output(&fresh, device), expected);
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = fresh.load_from(&mut store).unwrap();
    let mut applied = result.applied.clone();
    applied.sort();
    let mut paths = expected_paths(Swap::Both);
    paths.sort();
    assert_eq!(applied, paths);
    assert!(result.missing.is_empty() && result.unused.is_empty());
    assert_eq!(output(&fresh, device), expected);
}

/// A record saved from other classes is an error with the checked loader, before loading.
fn record_of_other_class<B: Backend>(device: &B::Device) {
    let original = build::<B>(Swap::None, device).into_record();
    let patched = build::<B>(Swap::Attention, device);
    let err = load_record_checked(patched, original).unwrap_err();
    let LoadRecordError::Mismatch(mismatches) = &err else {
        panic!("expected a mismatch, got {err}");
    };
    assert_eq!(mismatches.len(), LAYERS, "one per attention slot");
    assert_eq!(
        err.to_string(),
        "2 slot record(s) do not fit the model:\n  - a slot of interface `AttentionLayer` (at \
         `self_attn` in `TinyLayer`) holds class `FusedAttention`, but its record was saved from \
         class `TinyAttention`; build the model with the same class_mapping as the model that was \
         saved\n  - a slot of interface `AttentionLayer` (at `self_attn` in `TinyLayer`) holds \
         class `FusedAttention`, but its record was saved from class `TinyAttention`; build the \
         model with the same class_mapping as the model that was saved"
    );
}

/// A record of the same classes saved with another configuration is an error too.
fn record_of_other_shapes<B: Backend>(device: &B::Device) {
    let wide = TinyConfig { ffn: 2 * FFN, ..TinyConfig::new() };
    let record = BuildContext::build(&patcher::<B>(Swap::None), device, |ctx| {
        TinyModel::new(ctx, &wide)
    })
    .unwrap()
    .into_record();
    let err = load_record_checked(build::<B>(Swap::None, device), record).unwrap_err();
    let LoadRecordError::Mismatch(mismatches) = &err else {
        panic!("expected a mismatch, got {err}");
    };
    assert_eq!(mismatches.len(), 2, "mlp and final_mlp");
    assert_eq!(
        mismatches[0].to_string(),
        "the record of class `TinyMlp` does not fit the slot's module: missing [], unexpected [], \
         kind or shape differs for [\"up.weight: Float[8, 16] -> Float[8, 32]\", \"up.bias: \
         Float[16] -> Float[32]\", \"down.weight: Float[16, 8] -> Float[32, 8]\"]; build the \
         model with the configuration it was saved with"
    );
}

/// Training on `Autodiff<B>`: gradients reach the replacement's parameters, a step changes
/// them, and `valid()` / `from_inner` keep the outputs.
fn autodiff_step<B: Backend>(device: &B::Device) {
    type AD<B> = burn::backend::Autodiff<B>;
    let model = build::<AD<B>>(Swap::Both, device);
    let path = "layers.1.self_attn.qkv_proj.weight";
    let (id, before) = param(&model, path);

    let loss = model.forward(input(device)).powi_scalar(2).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let grad = grads
        .get::<B, 2>(id)
        .expect("the replacement's weight gets a gradient");
    let grad = values(grad);
    assert!(grad.iter().any(|g| *g != 0.0));

    let lr = 0.5;
    let mut optim = SgdConfig::new().init::<AD<B>, TinyModel<AD<B>>>();
    let model = optim.step(lr, model, grads);
    let (_, after) = param(&model, path);
    assert_ne!(after, before);
    for ((a, b), g) in after.iter().zip(&before).zip(&grad) {
        assert!(
            (a - (b - lr as f32 * g)).abs() < 1e-5,
            "SGD step: {a} vs {b} - lr * {g}"
        );
    }

    // valid() is the same model on the inner backend; from_inner comes back.
    let expected = output(&model, device);
    let inner: TinyModel<B> = model.valid();
    assert_same_outputs(&output(&inner, device), &expected);
    assert_eq!(list_slots(&inner), expected_slots(Swap::Both));
    let back = TinyModel::<AD<B>>::from_inner(inner);
    assert_same_outputs(&output(&back, device), &expected);
    assert!(is_require_grad(&back, path));
}

fn is_require_grad<B: AutodiffBackend, M: Module<B>>(module: &M, path: &str) -> bool {
    struct Grad<'a>(Vec<String>, &'a str, Option<bool>);
    impl<B: Backend> ModuleVisitor<B> for Grad<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.0.join(".") == self.1 {
                self.2 = Some(param.val().is_require_grad());
            }
        }
    }
    let mut visitor = Grad(Vec::new(), path, None);
    module.visit(&mut visitor);
    visitor.2.expect("parameter found")
}

/// `.train()` on a model built on the inner backend (the route slots learn when built).
fn train_from_inner<B: Backend>(device: &B::Device) {
    type AD<B> = burn::backend::Autodiff<B>;
    let model = build::<B>(Swap::Both, device);
    let expected = output(&model, device);
    let trained = model.train::<AD<B>>();
    assert_same_outputs(&output(&trained, device), &expected);
    assert!(is_require_grad(&trained, "mlp.gate_up.weight"));
    assert_same_outputs(&output(&trained.valid(), device), &expected);
}

/// Device moves keep the model: to_device, fork, devices.
fn device_moves<B: Backend>(device: &B::Device) {
    let model = build::<B>(Swap::Both, device);
    let expected = output(&model, device);
    assert_eq!(model.devices(), vec![device.clone()]);
    let moved = model.clone().to_device(device);
    assert_eq!(output(&moved, device), expected);
    assert_eq!(params(&moved), params(&model));
    let forked = model.fork(device);
    assert_eq!(output(&forked, device), expected);
    assert_eq!(forked.devices(), vec![device.clone()]);
}

/// Display shows the class inside and what it replaces.
fn display<B: Backend>(device: &B::Device) {
    let text = build::<B>(Swap::Attention, device).to_string();
    assert!(
        text.contains("self_attn: FusedAttention (replaces TinyAttention) {"),
        "{text}"
    );
    assert!(text.contains("qkv_proj: Linear"), "{text}");
    assert!(text.contains("mlp: TinyMlp {"), "{text}");
    let slot = &build::<B>(Swap::None, device).mlp;
    assert!(slot.to_string().starts_with("TinyMlp {"), "{slot}");
}

/// A class_mapping key that matches no slot class is an error naming the model's classes.
fn unknown_class<B: Backend>(device: &B::Device) {
    let patcher = Patcher::<B>::new().class_mapping(
        "TinyAtention",
        replacement::<FusedAttention<B>, dyn AttentionLayer<B>>(),
    );
    let err = BuildContext::build(&patcher, device, |ctx| {
        TinyModel::new(ctx, &TinyConfig::new())
    })
    .unwrap_err();
    assert!(matches!(
        &err,
        BuildError::Patcher(PatcherErrors(errors))
            if matches!(errors.as_slice(), [PatcherError::UnknownClasses { .. }])
    ));
    assert_eq!(
        err.to_string(),
        "class mapping key `TinyAtention` matches no class of the model (did you mean \
         `TinyAttention`?)\nthe model's classes are: TinyLayer, TinyAttention, TinyMlp\nUse one of \
         these names exactly, or the regex call"
    );
}

/// A replacement for another interface is an error naming both interfaces.
fn wrong_interface<B: Backend>(device: &B::Device) {
    let patcher = Patcher::<B>::new().class_mapping(
        "TinyAttention",
        replacement::<GatedMlp<B>, dyn MlpLayer<B>>(),
    );
    let err = BuildContext::build(&patcher, device, |ctx| {
        TinyModel::new(ctx, &TinyConfig::new())
    })
    .unwrap_err();
    assert_eq!(
        err,
        BuildError::WrongInterface {
            original: "TinyAttention",
            path: None,
            replacement: "GatedMlp",
            slot_interface: "AttentionLayer",
            replacement_interface: "MlpLayer",
        }
    );
    assert_eq!(
        err.to_string(),
        "the patcher maps `TinyAttention` to `GatedMlp`, which fills slots of interface \
         `MlpLayer`, but that slot has interface `AttentionLayer`; map it to a class with \
         #[patchable(implements(AttentionLayer))]"
    );
}

/// A plain (unpatched) context builds the originals, and seen classes are recorded.
fn plain_context<B: Backend>(device: &B::Device) {
    let ctx = BuildContext::<B>::plain(device);
    let model = TinyModel::new(&ctx, &TinyConfig::new());
    assert_eq!(
        ctx.seen_classes(),
        vec!["TinyLayer", "TinyAttention", "TinyMlp"]
    );
    assert_eq!(list_slots(&model), expected_slots(Swap::None));
}

// ---------------------------------------------------------------------------------------------
// Instantiations

macro_rules! backend_tests {
    ($name:ident, $backend:ty, $device:expr) => {
        mod $name {
            use super::*;

            type Be = $backend;

            fn device() -> burn::tensor::Device<Be> {
                $device
            }

            #[test]
            fn unpatched_one_swapped_both_swapped() {
                structure::<Be>(&device());
            }

            #[test]
            fn regex_keys_and_exact_wins() {
                regex_keys::<Be>(&device());
            }

            #[test]
            fn named_mpk_record_round_trip() {
                record_round_trip::<Be>(&device());
            }

            #[test]
            fn burn_store_round_trip() {
                store_round_trip::<Be>(&device());
            }

            #[test]
            fn record_of_another_class_is_an_error() {
                record_of_other_class::<Be>(&device());
            }

            #[test]
            fn record_of_other_shapes_is_an_error() {
                record_of_other_shapes::<Be>(&device());
            }

            #[test]
            fn autodiff_step_reaches_replacement() {
                autodiff_step::<Be>(&device());
            }

            #[test]
            fn train_a_model_built_on_the_inner_backend() {
                train_from_inner::<Be>(&device());
            }

            #[test]
            fn to_device_and_fork() {
                device_moves::<Be>(&device());
            }

            #[test]
            fn display_names_the_replacement() {
                display::<Be>(&device());
            }

            #[test]
            fn unknown_class_key_lists_the_model_classes() {
                unknown_class::<Be>(&device());
            }

            #[test]
            fn replacement_of_another_interface_is_an_error() {
                wrong_interface::<Be>(&device());
            }

            #[test]
            fn plain_context_builds_originals() {
                plain_context::<Be>(&device());
            }
        }
    };
}

backend_tests!(ndarray, burn::backend::NdArray, Default::default());

#[cfg(feature = "flex")]
backend_tests!(flex, burn::backend::Flex, Default::default());
#[cfg(feature = "wgpu")]
backend_tests!(wgpu, burn::backend::Wgpu, Default::default());

/// Burn's own `load_record` has no error channel: the slot panics with the same message, before
/// any tensor is loaded.
#[test]
#[should_panic(
    expected = "holds class `FusedAttention`, but its record was saved from class \
                           `TinyAttention`"
)]
fn plain_load_record_of_another_class_panics_with_the_message() {
    type Be = burn::backend::NdArray;
    let device = Default::default();
    let original = build::<Be>(Swap::None, &device).into_record();
    let _ = build::<Be>(Swap::Attention, &device).load_record(original);
}

/// The documented limit of `from_inner`: a slot knows the way back to `Autodiff<B>` (built on
/// `B`) and to the backend a `valid()` came from, not to other autodiff backends.
#[test]
#[should_panic(expected = "has no route to the autodiff backend")]
fn from_inner_without_a_route_panics_with_the_message() {
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    type Be = burn::backend::NdArray;
    type Balanced = burn::backend::Autodiff<Be, BalancedCheckpointing>;
    let model = build::<Be>(Swap::Both, &Default::default());
    let _ = model.train::<Balanced>();
}

/// Built directly on a checkpointing autodiff backend, `valid()` and back work.
#[test]
fn balanced_checkpointing_valid_round_trip() {
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    type Balanced = burn::backend::Autodiff<burn::backend::NdArray, BalancedCheckpointing>;
    let device = Default::default();
    let model = build::<Balanced>(Swap::Both, &device);
    let expected = output(&model, &device);
    let back = TinyModel::<Balanced>::from_inner(model.valid());
    assert_eq!(output(&back, &device), expected);
}
