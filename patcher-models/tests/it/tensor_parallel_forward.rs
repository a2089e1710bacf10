//! Tensor-parallel forwards on burn-collective: N peers as threads, each built from its peer
//! config and loaded with its plan, give the single-device model's logits (<= 1e-4) on a
//! padded prefill and on cached decode steps, for every decoder family, unpatched and patched,
//! N = 2 and 4, on every backend; the same peers save the original checkpoint back byte for
//! byte; a peer that cannot join its group gets a typed error.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use crate::common::{
    assert_same_weights_file, fixtures, max_abs_diff_of, prefill_and_decode_logits, scratch,
    tensor_parallel_cases,
};
use burn::prelude::*;
use patcher_burn::burn_collective::{reset_collective, CollectiveConfig};
use patcher_burn::{save_tensor_parallel, Collective, Loaded, PeerJoinError, SaveOptions};
use patcher_core::plan::TensorParallel;
use patcher_models::auto::FamilyConfig;
use patcher_models::llama::LlamaForCausalLm;
use patcher_models::mixtral::MixtralForCausalLm;
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::Qwen2MoeForCausalLm;
use patcher_models::replacements::Patch;

/// burn-collective keeps one group per backend in the process: one test's peers at a time.
static ONE_GROUP: Mutex<()> = Mutex::new(());

/// A peer that is not done by then is stuck (its group lost a peer): the test fails instead.
const PEER_TIMEOUT: Duration = Duration::from_secs(300);

/// Loads `family`'s fixture with `patch` on one device and as each of `world` peers (threads on
/// burn-collective), and checks every peer's logits against the single device's; then saves
/// the peers and compares the file with the fixture.
fn peers_compute_the_whole_model<Bk, M>(
    family: &str,
    patch: Patch,
    world: usize,
    device: &Bk::Device,
) where
    Bk: Backend,
    M: FamilyModel<Bk> + CausalLm<Bk> + Send + 'static,
    M::Config: TensorParallelConfig + Clone + Send + 'static,
{
    let _group = ONE_GROUP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // A group a failed test left behind would refuse these peers.
    reset_collective::<Bk>();
    let dir = fixtures().join(family);
    let config = M::Config::from_file(&dir.join("config.json")).unwrap();
    let patcher = patch.patcher::<Bk, _>(&config).unwrap();
    let whole = Pretrained::<Bk>::from_path(&dir)
        .patcher(&patcher)
        .load_with_config::<M>(&config, device)
        .unwrap();
    let expected = prefill_and_decode_logits(&whole.model, device);

    let (sender, receiver) = mpsc::channel();
    for rank in 0..world {
        let (sender, dir, config, device) =
            (sender.clone(), dir.clone(), config.clone(), device.clone());
        std::thread::spawn(move || {
            let peer = run_peer::<Bk, M>(&dir, &config, patch, (rank, world), &device);
            sender.send((rank, peer)).unwrap();
        });
    }
    let mut peers: Vec<Option<Loaded<M>>> = (0..world).map(|_| None).collect();
    for _ in 0..world {
        let (rank, (logits, loaded)) = receiver
            .recv_timeout(PEER_TIMEOUT)
            .unwrap_or_else(|_| panic!("{family} {patch} {world} peers: a peer panicked or hung"));
        let worst = max_abs_diff_of(&logits, &expected);
        assert!(
            worst <= 1e-4,
            "{family} {patch} peer {rank} of {world}: logits differ by {worst}"
        );
        peers[rank] = Some(loaded);
    }
    let peers: Vec<_> = peers.into_iter().map(Option::unwrap).collect();
    let out = scratch(&format!(
        "tp-forward-{family}-{world}-{}",
        patch.to_string().replace('+', "-")
    ));
    save_tensor_parallel(&peers, &out, &SaveOptions::default()).unwrap();
    assert_same_weights_file(
        &out,
        &dir,
        &format!("{family} {patch} {world} forward peers"),
    );
}

/// Peer `rank` of `world`: joins the group, loads its slices and runs the forward.
fn run_peer<Bk, M>(
    dir: &PathBuf,
    config: &M::Config,
    patch: Patch,
    (rank, world): (usize, usize),
    device: &Bk::Device,
) -> (Vec<f32>, Loaded<M>)
where
    Bk: Backend,
    M: FamilyModel<Bk> + CausalLm<Bk>,
    M::Config: TensorParallelConfig,
{
    let (peer_config, plan) = config.tensor_parallel(rank, world).unwrap();
    let group = CollectiveConfig::default().with_num_devices(world);
    let peer = Collective::<Bk>::register(plan, device, group).unwrap();
    // The patcher of the whole config: its conversions are the checkpoint's.
    let patcher = patch.patcher::<Bk, _>(config).unwrap();
    let loaded = Pretrained::<Bk>::from_path(dir)
        .patcher(&patcher)
        .tensor_parallel(peer)
        .load_with_config::<M>(&peer_config, device)
        .unwrap();
    (prefill_and_decode_logits(&loaded.model, device), loaded)
}

/// Every decoder family, unpatched and patched, as 2 and 4 peers, on one backend.
macro_rules! tensor_parallel_forward_tests {
    ($backend:ty, $device:expr) => {
        use super::*;

        type B = $backend;

        #[test]
        fn llama_peers_compute_the_whole_model() {
            for (world, patch) in tensor_parallel_cases(Patch::fused_qkv()) {
                peers_compute_the_whole_model::<B, LlamaForCausalLm<B>>(
                    "llama", patch, world, &$device,
                );
            }
        }

        #[test]
        fn qwen2_moe_peers_compute_the_whole_model() {
            for (world, patch) in tensor_parallel_cases(Patch::seed()) {
                peers_compute_the_whole_model::<B, Qwen2MoeForCausalLm<B>>(
                    "qwen2_moe",
                    patch,
                    world,
                    &$device,
                );
            }
        }

        #[test]
        fn mixtral_peers_compute_the_whole_model() {
            for (world, patch) in tensor_parallel_cases(Patch::sequential_experts()) {
                peers_compute_the_whole_model::<B, MixtralForCausalLm<B>>(
                    "mixtral", patch, world, &$device,
                );
            }
        }
    };
}

crate::common::on_every_backend!(tensor_parallel_forward_tests);

#[test]
fn a_peer_that_cannot_join_gets_a_typed_error() {
    type B = burn::backend::NdArray<f32>;
    let _group = ONE_GROUP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    reset_collective::<B>();
    // A number of machines without the orchestrator's address: burn-collective refuses it.
    let config = CollectiveConfig::default()
        .with_num_devices(2)
        .with_num_nodes(2);
    let plan = TensorParallel::new(1, 2).unwrap();
    let error = Collective::<B>::register(plan, &Default::default(), config).unwrap_err();
    assert!(
        matches!(&error, PeerJoinError::Register { rank: 1, world: 2, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("InvalidConfig"), "{error}");
}
