//! The loader on a small synthetic model: layout step, expert merging, casts, strictness,
//! partial loads, shards, integer buffers and saving back bit for bit. Every test runs on
//! ndarray and, with the `wgpu` feature, on wgpu.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::common::*;
use burn::prelude::*;
use patcher_burn::{
    load_with, plan_with, save_pretrained, save_pretrained_with, LinearLayout, LoadError,
    LoadOptions, LoadSpec, Patcher, Pretrained, PretrainedModel, SaveOptions,
};
use patcher_core::{Checkpoint, DType, HostTensor, WeightTransform};

fn check_layout_and_merge<B: Backend>(device: &B::Device) {
    let dir = TempDir::new("layout");
    let tensors = tiny_checkpoint(DType::F32);
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);

    // Both Linear layouts hold the same values: transposed during the copy (the default) or
    // uploaded as the checkpoint's bytes and transposed as a view.
    for layout in [LinearLayout::Contiguous, LinearLayout::TransposedView] {
        let model = Tiny::<B>::new(device);
        let options = LoadOptions::default().linear_layout(layout);
        let loaded = Pretrained::from_path(dir.path())
            .options(options.clone())
            .load_into(&model)
            .unwrap();
        assert!(loaded.report.is_clean(), "{}", loaded.report);
        check_tiny_values(&loaded.model, &tensors);
    }
}

pub(crate) fn check_tiny_values<B: Backend>(
    m: &Tiny<B>,
    tensors: &HashMap<String, HostTensor<'static>>,
) {
    for layer in 0..LAYERS {
        let q = tensor_values(&tensors[&format!("layers.{layer}.q_proj.weight")]);
        // Burn's Linear stores [in, out]: element (i, o) is PyTorch's (o, i).
        let burn_q = values(m.layers[layer].q_proj.weight.val());
        for o in 0..OUT {
            for i in 0..HIDDEN {
                assert_eq!(burn_q[i * OUT + o], q[o * HIDDEN + i]);
            }
        }
        let bias = tensor_values(&tensors[&format!("layers.{layer}.q_proj.bias")]);
        assert_eq!(
            values(m.layers[layer].q_proj.bias.as_ref().unwrap().val()),
            bias
        );
        let norm = tensor_values(&tensors[&format!("layers.{layer}.norm.weight")]);
        assert_eq!(values(m.layers[layer].norm.gamma.val()), norm);

        // gate_up_proj = cat([stack(gate), stack(up)], dim=1), written out by hand.
        let mut expected = Vec::new();
        for e in 0..EXPERTS {
            expected.extend(tensor_values(&tensors[&expert_key(layer, e, "gate")]));
            expected.extend(tensor_values(&tensors[&expert_key(layer, e, "up")]));
        }
        assert_eq!(values(m.layers[layer].experts.gate_up_proj.val()), expected);
        let expected: Vec<f32> = (0..EXPERTS)
            .flat_map(|e| tensor_values(&tensors[&expert_key(layer, e, "down")]))
            .collect();
        assert_eq!(values(m.layers[layer].experts.down_proj.val()), expected);
    }
    let positions: Vec<i64> = m.position_ids.val().into_data().iter::<i64>().collect();
    assert_eq!(positions, (0..POSITIONS as i64).collect::<Vec<_>>());
}

fn check_strict_failure_keeps_model<B: Backend>(device: &B::Device) {
    let dir = TempDir::new("strict");
    let mut tensors = tiny_checkpoint(DType::F32);
    // A missing expert makes a shorter stack: a shape mismatch, not a silent load.
    tensors.remove(&expert_key(1, 2, "gate"));
    tensors.remove(&expert_key(1, 2, "up"));
    tensors.insert("layers.0.q_proj.scale".into(), f32_tensor(&[OUT], 3.0));
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);

    let model = Tiny::<B>::new(device);
    let before = values(model.layers[1].experts.gate_up_proj.val());
    let err = Pretrained::from_path(dir.path())
        .load_into(&model)
        .unwrap_err();
    let LoadError::Incomplete { report } = &err else {
        panic!("expected an incomplete load, got {err}");
    };
    assert_eq!(report.unexpected, ["layers.0.q_proj.scale"]);
    assert_eq!(report.mismatched.len(), 1);
    let mismatch = &report.mismatched[0];
    assert_eq!(mismatch.name, "layers.1.experts.gate_up_proj");
    assert_eq!(mismatch.checkpoint_shape, [EXPERTS - 1, 2 * INTER, HIDDEN]);
    assert_eq!(mismatch.model_shape, [EXPERTS, 2 * INTER, HIDDEN]);
    let text = err.to_string();
    assert!(text.contains("layers.0.q_proj.scale"), "{text}");
    assert!(text.contains("partial()"), "{text}");
    // The caller's model is untouched.
    assert_eq!(values(model.layers[1].experts.gate_up_proj.val()), before);

    // The dry run plans the same: the report the error carries, and no load.
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    let spec = LoadSpec::for_model::<B, Tiny<B>>(&Patcher::new());
    let plan = plan_with(&model, &checkpoint, &spec, &LoadOptions::default()).unwrap();
    assert!(!plan.would_load);
    assert_eq!(&plan.report, report.as_ref());
    let partial = plan_with(
        &model,
        &checkpoint,
        &spec,
        &LoadOptions::default().partial(),
    );
    assert!(partial.unwrap().would_load);
}

fn check_partial_load<B: Backend>(device: &B::Device) {
    let dir = TempDir::new("partial");
    let mut tensors = tiny_checkpoint(DType::F32);
    tensors.remove("layers.1.norm.weight");
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);

    let model = Tiny::<B>::new(device);
    let init_norm = values(model.layers[1].norm.gamma.val());
    let options = LoadOptions::default().partial();
    let loaded = Pretrained::from_path(dir.path())
        .options(options.clone())
        .load_into(&model)
        .unwrap();
    assert_eq!(loaded.report.missing, ["layers.1.norm.weight"]);
    assert_eq!(values(loaded.model.layers[1].norm.gamma.val()), init_norm);
    let norm0 = tensor_values(&tensors["layers.0.norm.weight"]);
    assert_eq!(values(loaded.model.layers[0].norm.gamma.val()), norm0);
}

fn check_half_precision_checkpoints<B: Backend>(device: &B::Device) {
    for dtype in [DType::F16, DType::BF16] {
        let dir = TempDir::new("half");
        let tensors = tiny_checkpoint(dtype);
        write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
        let model = Tiny::<B>::new(device);
        let loaded = Pretrained::from_path(dir.path()).load_into(&model).unwrap();
        // The values are multiples of 1/16 below 8: exact in f16, bf16 and f32.
        let norm = tensor_values(&tensors["layers.1.norm.weight"]);
        assert_eq!(
            values(loaded.model.layers[1].norm.gamma.val()),
            norm,
            "{dtype}"
        );
        let down: Vec<f32> = (0..EXPERTS)
            .flat_map(|e| tensor_values(&tensors[&expert_key(0, e, "down")]))
            .collect();
        assert_eq!(
            values(loaded.model.layers[0].experts.down_proj.val()),
            down,
            "{dtype}"
        );

        // Saved back in the checkpoint's dtype: the same bytes (integer buffers untouched).
        let saved = dir.path().join("saved.safetensors");
        let options = SaveOptions::default().float_dtype(dtype);
        save_pretrained_with(&loaded, &saved, &options).unwrap();
        let saved = Checkpoint::open(&saved).unwrap();
        assert_eq!(saved.len(), tensors.len());
        for (key, tensor) in &tensors {
            let written = saved.get(key).unwrap();
            assert_eq!(written.dtype(), tensor.dtype, "{key}");
            assert!(
                written.read().unwrap().bytes == tensor.bytes,
                "{key} ({dtype})"
            );
        }
    }
}

fn check_sharded_group_across_files<B: Backend>(device: &B::Device) {
    let dir = TempDir::new("sharded");
    let tensors = tiny_checkpoint(DType::F32);
    // Layer 0's experts 0..1 in the first shard, the rest in the second.
    let (first, second): (Vec<_>, Vec<_>) = tensors
        .iter()
        .partition(|(k, _)| k.starts_with("layers.0.experts.0.") || k.starts_with("layers.0.q"));
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [("a.safetensors", &first), ("b.safetensors", &second)] {
        let part: HashMap<String, HostTensor<'static>> = part
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).clone()))
            .collect();
        write_checkpoint(&dir.path().join(file), &part);
        for key in part.keys() {
            weight_map.insert(key.clone(), file.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let model = Tiny::<B>::new(device);
    let loaded = Pretrained::from_path(dir.path()).load_into(&model).unwrap();
    let mut expected = Vec::new();
    for e in 0..EXPERTS {
        expected.extend(tensor_values(&tensors[&expert_key(0, e, "gate")]));
        expected.extend(tensor_values(&tensors[&expert_key(0, e, "up")]));
    }
    assert_eq!(
        values(loaded.model.layers[0].experts.gate_up_proj.val()),
        expected
    );
}

fn check_save_round_trip<B: Backend>(device: &B::Device) {
    let dir = TempDir::new("save");
    let tensors = tiny_checkpoint(DType::F32);
    let original = dir.path().join("model.safetensors");
    write_checkpoint(&original, &tensors);

    let model = Tiny::<B>::new(device);
    let loaded = Pretrained::from_path(&original).load_into(&model).unwrap();
    let saved = dir.path().join("saved.safetensors");
    save_pretrained(&loaded, &saved).unwrap();

    let original = Checkpoint::open(&original).unwrap();
    let saved = Checkpoint::open(&saved).unwrap();
    let mut keys: Vec<_> = saved.keys().collect();
    keys.sort();
    let mut expected: Vec<_> = original.keys().collect();
    expected.sort();
    assert_eq!(keys, expected);
    for key in keys {
        let (a, b) = (original.get(key).unwrap(), saved.get(key).unwrap());
        assert_eq!((a.dtype(), a.shape()), (b.dtype(), b.shape()), "{key}");
        assert!(
            a.read().unwrap().bytes == b.read().unwrap().bytes,
            "{key} differs after the round trip"
        );
    }
}

fn check_progress_and_threads<B: Backend>(device: &B::Device) {
    let dir = TempDir::new("progress");
    let tensors = tiny_checkpoint(DType::F32);
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    // A tiny bound: every group is its own wave.
    let options = LoadOptions::default()
        .threads(2)
        .max_bytes_in_flight(1)
        .on_progress(move |p| sink.lock().unwrap().push(*p));
    let model = Tiny::<B>::new(device);
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    let spec = LoadSpec::of_transforms(Tiny::<B>::weight_conversions());
    let loaded = load_with(&model, &checkpoint, &spec, &options).unwrap();
    let seen = seen.lock().unwrap();
    let total_bytes: u64 = tensors.values().map(|t| t.num_bytes() as u64).sum();
    let last = seen.last().unwrap();
    assert_eq!(last.bytes_done, total_bytes);
    assert_eq!(last.params_done, last.params_total);
    // Per layer: q_proj weight and bias, norm, gate_up_proj, down_proj; plus position_ids.
    assert_eq!(last.params_total, 5 * LAYERS + 1);
    // One wave per group (the bound is one byte), bytes never decrease.
    assert_eq!(seen.len(), 5 * LAYERS + 1);
    assert!(seen.windows(2).all(|w| w[0].bytes_done < w[1].bytes_done));
    assert!(loaded.report.is_clean());
}

fn check_missing_checkpoint<B: Backend>(device: &B::Device) {
    let model = Tiny::<B>::new(device);
    let err = Pretrained::from_path("/nonexistent/checkpoint")
        .load_into(&model)
        .unwrap_err();
    assert!(matches!(err, LoadError::Checkpoint(_)), "{err}");
    assert!(err.to_string().contains("/nonexistent/checkpoint"), "{err}");
}

fn check_int_buffer_reported<B: Backend>(device: &B::Device) {
    let dir = TempDir::new("int");
    let mut tensors = tiny_checkpoint(DType::F32);
    // A float tensor where the model has an int buffer is refused with the key, not a crash.
    tensors.insert("position_ids".into(), f32_tensor(&[POSITIONS], 1.0));
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
    let model = Tiny::<B>::new(device);
    let err = Pretrained::from_path(dir.path())
        .load_into(&model)
        .unwrap_err();
    assert!(err.to_string().contains("position_ids"), "{err}");
}

macro_rules! backend_tests {
    ($module:ident, $backend:ty, $device:expr) => {
        mod $module {
            use super::*;
            type B = $backend;

            #[test]
            fn layout_and_merge() {
                check_layout_and_merge::<B>(&$device);
            }
            #[test]
            fn strict_failure_keeps_model() {
                check_strict_failure_keeps_model::<B>(&$device);
            }
            #[test]
            fn partial_load() {
                check_partial_load::<B>(&$device);
            }
            #[test]
            fn half_precision_checkpoints() {
                check_half_precision_checkpoints::<B>(&$device);
            }
            #[test]
            fn sharded_group_across_files() {
                check_sharded_group_across_files::<B>(&$device);
            }
            #[test]
            fn save_round_trip() {
                check_save_round_trip::<B>(&$device);
            }
            #[test]
            fn progress_and_threads() {
                check_progress_and_threads::<B>(&$device);
            }
            #[test]
            fn missing_checkpoint() {
                check_missing_checkpoint::<B>(&$device);
            }
            #[test]
            fn int_buffer_reported() {
                check_int_buffer_reported::<B>(&$device);
            }
        }
    };
}

backend_tests!(ndarray, burn::backend::NdArray, Default::default());
#[cfg(feature = "flex")]
backend_tests!(flex, burn::backend::Flex, Default::default());
#[cfg(feature = "wgpu")]
backend_tests!(
    wgpu,
    burn::backend::Wgpu,
    burn::backend::wgpu::WgpuDevice::default()
);

/// The indicatif bar (feature `progress`) drives a real load to the end.
#[cfg(feature = "progress")]
#[test]
fn progress_bar_load() {
    let dir = TempDir::new("bar");
    let tensors = tiny_checkpoint(DType::F32);
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
    let model = Tiny::<burn::backend::NdArray>::new(&Default::default());
    let options = LoadOptions::default().progress_bar();
    let loaded = Pretrained::from_path(dir.path())
        .options(options.clone())
        .load_into(&model)
        .unwrap();
    let norm = tensor_values(&tensors["layers.1.norm.weight"]);
    assert_eq!(values(loaded.model.layers[1].norm.gamma.val()), norm);
}

#[test]
fn default_conversions_are_declared() {
    let conversions: Vec<WeightTransform> = Tiny::<burn::backend::NdArray>::weight_conversions();
    assert_eq!(conversions.len(), 2);
}
