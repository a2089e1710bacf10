//! Tensor-parallel peers as processes (issue 21, item 3): two processes on loopback join one
//! group through burn-collective's global orchestrator (two nodes, one device each) with
//! [`Collective::register`] and all-reduce a tensor, each getting the exact sum.
//!
//! Only one collective operation: burn-collective 0.21.0's global level hangs on the second
//! (`global/node/sync.rs`: `SyncService::sync` clears a copy of its list of synced nodes, so the
//! next sync never sees the list it expects). A model's forward runs two all-reduces per
//! layer, so the model across processes waits for that fix (see `docs/tensor-parallel.md`).
//!
//! Its own harness: the test starts the orchestrator on a thread, runs this binary twice as the
//! peers (`PATCHER_TP_PEER=rank`, ports in `PATCHER_TP_PORTS`), waits at most [`DEADLINE`] for
//! them, kills what is left, and fails unless both printed the sum. The addresses are
//! 127.0.0.1, on ports the system picked free (burn-communication's servers listen on every
//! interface; the port is not announced anywhere).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burn::backend::NdArray;
use burn::prelude::*;
use burn_collective::start_global_orchestrator;
use patcher_burn::burn_collective::CollectiveConfig;
use patcher_burn::Collective;
use patcher_core::plan::TensorParallel;

type B = NdArray<f32>;

/// The peers' whole run: start, join, reduce, leave.
const DEADLINE: Duration = Duration::from_secs(120);
const WORLD: usize = 2;

fn main() {
    match std::env::var("PATCHER_TP_PEER") {
        Ok(rank) => peer(rank.parse().expect("PATCHER_TP_PEER is a rank")),
        Err(_) => {
            print!(
                "test tensor_parallel_processes::two_processes_sum_through_the_orchestrator ... "
            );
            two_processes_sum_through_the_orchestrator();
            println!("ok");
        }
    }
}

/// Peer `rank`'s part: a tensor of its own.
fn part(rank: usize) -> Vec<f32> {
    (0..6).map(|i| (rank * 10 + i) as f32 * 0.5).collect()
}

fn two_processes_sum_through_the_orchestrator() {
    let ports: Vec<u16> = (0..=WORLD).map(|_| free_port()).collect();
    let orchestrator = ports[0];
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(start_global_orchestrator(orchestrator));
    });
    wait_for_port(orchestrator);

    let ports_env = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut peers: Vec<Child> = (0..WORLD)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .env("PATCHER_TP_PEER", rank.to_string())
                .env("PATCHER_TP_PORTS", &ports_env)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    while peers.iter_mut().any(|p| p.try_wait().unwrap().is_none()) {
        if start.elapsed() > DEADLINE {
            for peer in &mut peers {
                let _ = peer.kill();
                let _ = peer.wait();
            }
            panic!("the peer processes did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let expected: Vec<f32> = (0..WORLD)
        .map(part)
        .reduce(|a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect())
        .unwrap();
    for (rank, mut peer) in peers.into_iter().enumerate() {
        let status = peer.wait().unwrap();
        let mut out = String::new();
        peer.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(status.success(), "peer {rank} failed ({status}): {out}");
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("sum "))
            .unwrap_or_else(|| panic!("peer {rank} printed no sum: {out}"));
        let sum: Vec<f32> = serde_json::from_str(line).unwrap();
        assert_eq!(sum, expected, "peer {rank} of {WORLD}");
    }
}

/// Peer `rank`: one device on a node of its own, joined through the orchestrator.
fn peer(rank: usize) {
    let ports: Vec<u16> = std::env::var("PATCHER_TP_PORTS")
        .unwrap()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let node = ports[1 + rank];
    let group = CollectiveConfig::default()
        .with_num_devices(1)
        .with_num_nodes(WORLD as u32)
        .with_global_address(format!("ws://127.0.0.1:{}", ports[0]).parse().unwrap())
        .with_node_address(format!("ws://127.0.0.1:{node}").parse().unwrap())
        .with_data_service_port(node);
    let device = Default::default();
    let plan = TensorParallel::new(rank, WORLD).unwrap();
    let peer = Collective::<B>::register(plan, &device, group).unwrap();
    let part = Tensor::<B, 1>::from_floats(part(rank).as_slice(), &device);
    let sum: Vec<f32> = peer.all_reduce(part).into_data().to_vec().unwrap();
    println!("sum {}", serde_json::to_string(&sum).unwrap());
}

/// A port free on 127.0.0.1 now (the system's pick).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the orchestrator did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
