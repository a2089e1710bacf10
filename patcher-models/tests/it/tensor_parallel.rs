//! Tensor-parallel loading: each of N peers, built from its family's peer config and loaded
//! with the plan, holds exactly its slice of every split parameter of the single-device model
//! and the whole of the others, bit for bit; it reads fewer bytes than the whole load; the
//! peers together save the original checkpoint back byte for byte; a config or plan that does
//! not split gives typed errors; a peer's model is not saved alone.

use std::collections::HashMap;

use crate::common::{assert_same_weights_file, fixtures, scratch, tensor_parallel_cases};
use burn::backend::NdArray;
use burn::prelude::Backend;
use burn_store::ModuleSnapshot;
use patcher_burn::{
    model_params_with, save_pretrained, save_tensor_parallel, Layout, LoadError, LoadOptions,
    ParamInfo, SaveError, SaveOptions,
};
use patcher_core::plan::{Split, TensorParallel};
use patcher_core::{ConfigError, HostTensor};
use patcher_models::auto::FamilyConfig;
use patcher_models::llama::{LlamaConfig, LlamaForCausalLm};
use patcher_models::mixtral::MixtralForCausalLm;
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::Qwen2MoeForCausalLm;
use patcher_models::replacements::Patch;

type B = NdArray<f32>;

/// Every parameter of `model` in PyTorch layout (a Linear weight transposed back to
/// `[out, in]`), by Burn path, with its info.
fn torch_params<Bk: Backend, M: FamilyModel<Bk>>(
    model: &M,
) -> HashMap<String, (ParamInfo, HostTensor<'static>)> {
    let infos = model_params_with(model, &M::torch_layouts());
    let values: HashMap<String, Vec<f32>> = model
        .collect(None, None, true)
        .into_iter()
        .map(|s| {
            (
                s.full_path(),
                s.to_data().unwrap().convert::<f32>().to_vec().unwrap(),
            )
        })
        .collect();
    infos
        .into_iter()
        .map(|info| {
            let values = values.get(&info.burn_path).unwrap_or_else(|| {
                let mut paths: Vec<_> = values.keys().collect();
                paths.sort();
                panic!("{} not in {paths:?}", info.burn_path)
            });
            let values = match info.layout {
                Layout::Transposed => {
                    let (rows, cols) = (info.torch_shape[0], info.torch_shape[1]);
                    // Burn holds [cols, rows]: element (r, c) of PyTorch's is at c * rows + r.
                    (0..rows * cols)
                        .map(|i| values[(i % cols) * rows + i / cols])
                        .collect()
                }
                _ => values.clone(),
            };
            let tensor = HostTensor::from_f32(info.torch_shape.clone(), &values);
            (info.burn_path.clone(), (info, tensor))
        })
        .collect()
}

/// Loads `family`'s fixture whole and as each of `world` peers with `patch`, and checks every
/// peer parameter against the whole model's.
fn peers_hold_their_slices<Bk, M>(family: &str, patch: Patch, world: usize, device: &Bk::Device)
where
    Bk: Backend,
    M: FamilyModel<Bk>,
    M::Config: TensorParallelConfig,
{
    let dir = fixtures().join(family);
    let config = M::Config::from_file(&dir.join("config.json")).unwrap();
    let patcher = patch.patcher::<Bk, _>(&config).unwrap();
    let whole = Pretrained::<Bk>::from_path(&dir)
        .patcher(&patcher)
        .load_with_config::<M>(&config, device)
        .unwrap();
    let whole_params = torch_params(&whole.model);
    let mut peers = Vec::new();
    // In reverse: the save takes the peers in any order.
    for rank in (0..world).rev() {
        let (peer_config, plan) = config.tensor_parallel(rank, world).unwrap();
        // The patcher of the whole config: its conversions are the checkpoint's.
        let peer = Pretrained::<Bk>::from_path(&dir)
            .patcher(&patcher)
            .options(LoadOptions::default().tensor_parallel(plan.clone()))
            .load_with_config::<M>(&peer_config, device)
            .unwrap_or_else(|e| panic!("{family} {patch} peer {rank}/{world}: {e}"));
        let peer_params = torch_params(&peer.model);
        assert_eq!(peer_params.len(), whole_params.len());
        let mut split = 0;
        for (path, (info, value)) in &peer_params {
            let (_, full) = &whole_params[path];
            let expected = match plan.slice_of(&info.torch_name, &full.shape).unwrap() {
                Some(slice) => {
                    split += 1;
                    slice.take(full)
                }
                None => full.view().into_owned(),
            };
            assert_eq!(
                value.shape, expected.shape,
                "{family} {patch} {path} {rank}/{world}"
            );
            assert_eq!(
                value.bytes, expected.bytes,
                "{family} {patch} {path} {rank}/{world}"
            );
        }
        // q, k, v (or qkv), o, and the MLP's or experts' projections of every layer.
        assert!(
            split >= 4 * config_layers(&dir),
            "{family}: only {split} split parameters"
        );
        let held: u64 = peer_params
            .values()
            .map(|(_, v)| v.num_bytes() as u64)
            .sum();
        assert!(
            peer.bytes_read >= held,
            "{} read < {held} held",
            peer.bytes_read
        );
        assert!(
            peer.bytes_read < whole.bytes_read,
            "{family} {patch} peer {rank}/{world} read {} of {}",
            peer.bytes_read,
            whole.bytes_read
        );
        peers.push(peer);
    }
    let out = scratch(&format!(
        "tp-{family}-{world}-{}",
        patch.to_string().replace('+', "-")
    ));
    save_tensor_parallel(&peers, &out, &SaveOptions::default()).unwrap();
    assert_same_weights_file(&out, &dir, &format!("{family} {patch} {world} peers"));
}

fn config_layers(dir: &std::path::Path) -> usize {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    json["num_hidden_layers"].as_u64().unwrap() as usize
}

/// Every family, unpatched and patched, as each of 2 and 4 peers, on one backend.
macro_rules! tensor_parallel_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn llama_peers_hold_their_slices() {
            for (world, patch) in tensor_parallel_cases(Patch::fused_qkv()) {
                peers_hold_their_slices::<B, LlamaForCausalLm<B>>("llama", patch, world, &$device);
            }
        }

        #[test]
        fn qwen2_moe_peers_hold_their_slices() {
            for (world, patch) in tensor_parallel_cases(Patch::seed()) {
                let family = "qwen2_moe";
                peers_hold_their_slices::<B, Qwen2MoeForCausalLm<B>>(
                    family, patch, world, &$device,
                );
            }
        }

        #[test]
        fn mixtral_peers_hold_their_slices() {
            for (world, patch) in tensor_parallel_cases(Patch::sequential_experts()) {
                let family = "mixtral";
                peers_hold_their_slices::<B, MixtralForCausalLm<B>>(family, patch, world, &$device);
            }
        }
    };
}

crate::common::on_every_backend!(tensor_parallel_tests);

#[test]
fn contiguous_slices_are_all_that_is_read() {
    // Colwise rows are one read each: with only q/k/v/gate/up split, a peer reads the rest whole
    // and exactly its rows of those.
    let device = Default::default();
    let dir = fixtures().join("llama");
    let config = LlamaConfig::from_file(dir.join("config.json")).unwrap();
    let whole = Pretrained::<B>::from_path(&dir)
        .load_with_config::<LlamaForCausalLm<B>>(&config, &device)
        .unwrap();
    let mut peer_config = config.clone();
    peer_config.core.num_attention_heads /= 2;
    peer_config.core.num_key_value_heads /= 2;
    let core = &config.core;
    let plan = TensorParallel::new(0, 2)
        .unwrap()
        .split(
            "self_attn.q_proj",
            Split::Heads(vec![core.num_attention_heads]),
        )
        .unwrap()
        .split(
            "self_attn.k_proj",
            Split::Heads(vec![core.num_key_value_heads]),
        )
        .unwrap()
        .split(
            "self_attn.v_proj",
            Split::Heads(vec![core.num_key_value_heads]),
        )
        .unwrap()
        .split("self_attn.o_proj", Split::Rowwise)
        .unwrap();
    // o_proj's columns are not contiguous: read whole (tiny rows), then sliced.
    let peer = Pretrained::<B>::from_path(&dir)
        .options(LoadOptions::default().tensor_parallel(plan))
        .load_with_config::<LlamaForCausalLm<B>>(&peer_config, &device)
        .unwrap();
    let (h, kv, d, hidden) = (4, 2, 24, 64);
    let qkv_bytes = ((h + 2 * kv) * d * hidden * 4) as u64;
    let layers = config.core.num_hidden_layers as u64;
    assert_eq!(whole.bytes_read - peer.bytes_read, layers * qkv_bytes / 2);
}

#[test]
fn what_does_not_split_is_a_typed_error() {
    let dir = fixtures().join("llama");
    let config = LlamaConfig::from_file(dir.join("config.json")).unwrap();
    // 4 heads do not divide among 3 peers.
    let error = config.tensor_parallel(0, 3).unwrap_err();
    assert!(
        matches!(&error, ConfigError::Field { field, .. } if field == "num_attention_heads"),
        "{error}"
    );
    assert!(matches!(
        config.tensor_parallel(2, 2),
        Err(ConfigError::TensorParallel(_))
    ));
    // A biased rowwise projection would be added once per peer: refused, naming the field.
    for field in ["attention_bias", "mlp_bias"] {
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        json[field] = true.into();
        let biased = LlamaConfig::from_json_str(&json.to_string()).unwrap();
        let error = biased.tensor_parallel(0, 2).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Field { field: f, .. } if f == field),
            "{error}"
        );
        assert!(error.to_string().contains("one device"), "{error}");
    }
    // A plan that does not fit the checkpoint: the load fails with the plan's report, naming
    // the parameter, and nothing is loaded.
    let device = Default::default();
    let (peer_config, _) = config.tensor_parallel(0, 2).unwrap();
    let bad = config.core.tensor_parallel_plan(0, 2).unwrap();
    let bad = bad
        .split("embed_tokens", Split::Dim { dim: 2, blocks: vec![] })
        .unwrap();
    let result = Pretrained::<B>::from_path(&dir)
        .options(LoadOptions::default().tensor_parallel(bad))
        .load_with_config::<LlamaForCausalLm<B>>(&peer_config, &device);
    match result {
        Err(LoadError::Incomplete { report }) => {
            let error = &report.conversion_errors[0];
            assert_eq!(error.target, "model.embed_tokens.weight");
            assert!(
                error.message.contains("across 2 peers"),
                "{}",
                error.message
            );
            assert!(
                error.message.contains("no dimension 2"),
                "{}",
                error.message
            );
            assert!(report.missing.is_empty(), "{:?}", report.missing);
        }
        other => panic!("expected an incomplete load, got {other:?}"),
    }
}

#[test]
fn a_peer_is_not_saved_alone() {
    let device = Default::default();
    let dir = fixtures().join("llama");
    let config = LlamaConfig::from_file(dir.join("config.json")).unwrap();
    let (peer_config, plan) = config.tensor_parallel(1, 2).unwrap();
    let peer = Pretrained::<B>::from_path(&dir)
        .options(LoadOptions::default().tensor_parallel(plan))
        .load_with_config::<LlamaForCausalLm<B>>(&peer_config, &device)
        .unwrap();
    let out = scratch("tp-peer-save");
    let error = save_pretrained(&peer, &out).unwrap_err();
    assert!(
        matches!(error, SaveError::TensorParallel { rank: 1, world: 2 }),
        "{error}"
    );
    // Nor as all the peers when it is one of two.
    let error = save_tensor_parallel(&[peer], &out, &SaveOptions::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("peer 1 of 2 given among 1 peers"),
        "{error}"
    );
    assert!(!out.join("model.safetensors").exists());
}
