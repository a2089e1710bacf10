//! A device map (pipeline parallelism in one process): a model whose second layer lives on
//! another wgpu device (two devices of Mesa's lavapipe) holds every parameter of that layer
//! there and the rest on the model's device, and gives the one-device model's logits on a
//! padded prefill and cached decode steps, unpatched and patched; a bad pattern, or a rule
//! that names no slot, is a typed error.

use burn::backend::wgpu::WgpuDevice;
use burn::backend::Wgpu;
use burn::module::Module;
use patcher_burn::{BuildError, DeviceMap, DeviceMapError, LoadError};
use patcher_models::auto::FamilyConfig;
use patcher_models::llama::LlamaForCausalLm;
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::Qwen2MoeForCausalLm;
use patcher_models::replacements::Patch;

use crate::common::{fixtures, max_abs_diff_of, prefill_and_decode_logits};

type B = Wgpu;

/// The devices of a model's parts, by name.
trait Parts {
    /// `(name, devices of every parameter in it)` for the embedding, each layer, the final
    /// norm and the head.
    fn part_devices(&self) -> Vec<(String, Vec<WgpuDevice>)>;
}

macro_rules! parts {
    ($model:ty) => {
        impl Parts for $model {
            fn part_devices(&self) -> Vec<(String, Vec<WgpuDevice>)> {
                let m = &self.model;
                let mut parts = vec![("embed_tokens".to_string(), m.embed_tokens.devices())];
                for (i, layer) in m.layers.iter().enumerate() {
                    parts.push((format!("layers.{i}"), layer.devices()));
                }
                parts.push(("norm".into(), m.norm.devices()));
                if let Some(head) = &self.lm_head {
                    parts.push(("lm_head".into(), head.devices()));
                }
                parts
            }
        }
    };
}
parts!(LlamaForCausalLm<B>);
parts!(Qwen2MoeForCausalLm<B>);

fn second_layer_elsewhere<M>(family: &str, patch: Patch)
where
    M: FamilyModel<B> + CausalLm<B> + Parts,
{
    let (home, other) = (WgpuDevice::DefaultDevice, WgpuDevice::Cpu);
    let dir = fixtures().join(family);
    let config = M::Config::from_file(&dir.join("config.json")).unwrap();
    let patcher = patch.patcher::<B, _>(&config).unwrap();
    let whole = Pretrained::<B>::from_path(&dir)
        .patcher(&patcher)
        .load_with_config::<M>(&config, &home)
        .unwrap();
    let map = DeviceMap::new()
        .layers("layers", 1..2, other.clone())
        .unwrap();
    let split = Pretrained::<B>::from_path(&dir)
        .patcher(&patcher)
        .device_map(map)
        .load_with_config::<M>(&config, &home)
        .unwrap();
    for (part, devices) in split.model.part_devices() {
        let expected = if part == "layers.1" { &other } else { &home };
        assert_eq!(
            devices,
            std::slice::from_ref(expected),
            "{family} {patch} {part}"
        );
    }
    let expected = prefill_and_decode_logits(&whole.model, &home);
    let got = prefill_and_decode_logits(&split.model, &home);
    let worst = max_abs_diff_of(&got, &expected);
    assert!(worst <= 1e-4, "{family} {patch}: logits differ by {worst}");
}

#[test]
fn llama_with_its_second_layer_on_another_device() {
    for patch in [Patch::NONE, Patch::fused_qkv()] {
        second_layer_elsewhere::<LlamaForCausalLm<B>>("llama", patch);
    }
}

#[test]
fn qwen2_moe_with_its_second_layer_on_another_device() {
    for patch in [Patch::NONE, Patch::seed()] {
        second_layer_elsewhere::<Qwen2MoeForCausalLm<B>>("qwen2_moe", patch);
    }
}

#[test]
fn a_rule_that_names_no_slot_is_a_typed_error() {
    let dir = fixtures().join("llama");
    // `layer.1` for `layers.1`: nothing would move.
    let map = DeviceMap::new().place("layer.1", WgpuDevice::Cpu).unwrap();
    let result = Pretrained::<B>::from_path(&dir)
        .device_map(map)
        .load::<LlamaForCausalLm<B>>(&WgpuDevice::DefaultDevice);
    match result {
        Err(LoadError::Build(BuildError::DeviceMapUnmatched { pattern, example })) => {
            assert_eq!(pattern, "layer.1");
            assert!(example.starts_with("model."), "{example}");
        }
        other => panic!("expected an unmatched rule, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_pattern_that_is_not_a_module_path_is_a_typed_error() {
    let error = DeviceMap::<B>::new()
        .place("layers.(1)", WgpuDevice::Cpu)
        .unwrap_err();
    assert_eq!(
        error,
        DeviceMapError::Pattern { pattern: "layers.(1)".into() }
    );
    assert!(error.to_string().contains("module path"), "{error}");
}
