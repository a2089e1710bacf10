//! A save is one commit: killed at any instant, out of disk, or raced by another save into the
//! same folder, it leaves the whole old checkpoint or the whole new one, and nothing else.
//!
//! The kill test re-runs this test binary as a child process (`save_child` below) that saves a
//! sharded checkpoint over another one, and kills it with SIGKILL at random instants, the write
//! window included. `PATCHER_SAVE_KILLS` sets how many kills (CI's default is small; run with
//! 200 locally); `PATCHER_SAVE_SEED` replays a run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::backend::NdArray;
use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;
use patcher_burn::{save_model, SaveError, SaveOptions};
use patcher_core::{Checkpoint, CheckpointError};

use crate::common::TempDir;

type B = NdArray;

/// Six `Linear`s of 96 x 96: six shards of 37 KB with the shard size below.
#[derive(Module, Debug)]
struct Stack<B: Backend> {
    layers: Vec<Linear<B>>,
}

const LAYERS: usize = 6;
const WIDTH: usize = 96;
const SHARD_BYTES: u64 = 40_000;

/// Version `version` of the model: every value says which version and parameter it is.
fn stack(version: u32) -> Stack<B> {
    let device = Default::default();
    let fill = |layer: usize, n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| version as f32 * 1000.0 + layer as f32 + i as f32 * 1e-3)
            .collect()
    };
    let layers = (0..LAYERS)
        .map(|l| {
            let weight = TensorData::new(fill(l, WIDTH * WIDTH), [WIDTH, WIDTH]);
            let bias = TensorData::new(fill(l + 100, WIDTH), [WIDTH]);
            Linear {
                weight: Param::initialized(ParamId::new(), Tensor::from_data(weight, &device)),
                bias: Some(Param::initialized(
                    ParamId::new(),
                    Tensor::from_data(bias, &device),
                )),
            }
        })
        .collect();
    Stack { layers }
}

/// Saves version `version` into `folder`, in shards.
fn save(version: u32, folder: &Path) -> Result<Vec<PathBuf>, SaveError> {
    let options = SaveOptions::default().max_shard_size(SHARD_BYTES);
    save_model(&stack(version), folder, &[], None, &options)
}

/// Every tensor's bytes of the checkpoint in `folder`.
fn contents(folder: &Path) -> Result<BTreeMap<String, Vec<u8>>, CheckpointError> {
    let checkpoint = Checkpoint::open(folder)?;
    let mut tensors = BTreeMap::new();
    for tensor in checkpoint.iter() {
        tensors.insert(tensor.name().to_string(), tensor.read()?.bytes.to_vec());
    }
    Ok(tensors)
}

/// The checkpoints of each version, as saved by an uninterrupted save.
struct Versions(Vec<BTreeMap<String, Vec<u8>>>);

impl Versions {
    fn new(count: u32) -> Self {
        let dir = TempDir::new("commit-versions");
        let versions = (0..count)
            .map(|v| {
                let folder = dir.path().join(v.to_string());
                save(v, &folder).unwrap();
                contents(&folder).unwrap()
            })
            .collect();
        Self(versions)
    }

    /// Which version the checkpoint in `folder` is, whole; a mix, a partial checkpoint or one
    /// that does not open is a panic naming what was found.
    fn which(&self, folder: &Path) -> u32 {
        let found = contents(folder).unwrap_or_else(|e| {
            panic!("the folder does not open: {e}; files: {:?}", files(folder))
        });
        for (v, version) in self.0.iter().enumerate() {
            if found == *version {
                return v as u32;
            }
        }
        let from: Vec<String> = found
            .iter()
            .map(|(key, bytes)| {
                let v = self
                    .0
                    .iter()
                    .position(|version| version.get(key) == Some(bytes));
                format!("{key}: {v:?}")
            })
            .collect();
        panic!(
            "the folder holds a mix of versions or a partial checkpoint: {from:?}; files: {:?}",
            files(folder)
        );
    }
}

fn files(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The child's side of the kill test, and on its own a plain test of one save.
///
/// Run by the kill test with `PATCHER_SAVE_CHILD=<folder>:<version>`: prints `PATCHER-SAVING`
/// just before it saves that version into the folder. Run as an ordinary test, it
/// saves into a fresh folder twice (the second over the first) and checks each loads whole.
#[test]
fn save_child() {
    if let Ok(job) = std::env::var("PATCHER_SAVE_CHILD") {
        let (folder, version) = job.rsplit_once(':').unwrap();
        let version: u32 = version.parse().unwrap();
        println!("PATCHER-SAVING");
        save(version, Path::new(folder)).unwrap();
        return;
    }
    let versions = Versions::new(2);
    let dir = TempDir::new("commit-child");
    save(0, dir.path()).unwrap();
    assert_eq!(versions.which(dir.path()), 0);
    save(1, dir.path()).unwrap();
    assert_eq!(versions.which(dir.path()), 1);
    assert_eq!(
        files(dir.path()).len(),
        LAYERS + 1,
        "{:?}",
        files(dir.path())
    );
}

/// A small xorshift, so the test needs no random crate; its seed is printed to replay a run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Starts a child that saves `version` into `folder`; returns once it is about to save.
fn start_child(
    folder: &Path,
    version: u32,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "commit::save_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(
            "PATCHER_SAVE_CHILD",
            format!("{}:{version}", folder.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // libtest may print the test's name on the same line first.
    while !line.contains("PATCHER-SAVING") {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!(
                "the child ended before saving: {:?}\n{stderr}",
                child.wait()
            );
        }
    }
    (child, stdout)
}

#[test]
fn a_save_killed_at_any_instant_leaves_the_old_or_the_new_checkpoint() {
    let kills: u32 = std::env::var("PATCHER_SAVE_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    let seed = std::env::var("PATCHER_SAVE_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(1, |d| d.as_nanos() as u64)
        });
    println!("PATCHER_SAVE_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let versions = Versions::new(2);
    let dir = TempDir::new("commit-kill");
    let folder = dir.path();
    save(0, folder).unwrap();

    // How long an uninterrupted save takes in a child, from `saving` to its end.
    let mut window = Duration::ZERO;
    for round in 0..3 {
        let version = 1 - versions.which(folder);
        let (mut child, _stdout) = start_child(folder, version);
        let start = Instant::now();
        assert!(child.wait().unwrap().success());
        window = window.max(start.elapsed());
        assert_eq!(
            versions.which(folder),
            version,
            "uninterrupted save {round}"
        );
    }

    let (mut old, mut new) = (0, 0);
    for _ in 0..kills {
        let before = versions.which(folder);
        let (mut child, _stdout) = start_child(folder, 1 - before);
        // Anywhere from the first byte to well past the end of the save.
        let delay = rng.below(window.as_micros() as u64 * 6 / 5);
        std::thread::sleep(Duration::from_micros(delay));
        let _ = child.kill();
        child.wait().unwrap();
        // A mix, a partial checkpoint or a folder that does not open panics here.
        if versions.which(folder) == before {
            old += 1;
        } else {
            new += 1;
        }
    }
    println!(
        "{kills} kills (save window {window:?}): {old} left the old checkpoint, {new} the new"
    );
    // The kills landed before and after the commit point, so the write window was hit.
    assert!(kills < 10 || (old > 0 && new > 0), "{old} old, {new} new");

    // Orphans of the killed saves are removed by the next save.
    save(0, folder).unwrap();
    assert_eq!(versions.which(folder), 0);
    assert_eq!(files(folder).len(), LAYERS + 1, "{:?}", files(folder));
}

#[test]
fn two_saves_into_one_folder_at_once_never_lose_data() {
    let versions = Versions::new(2);
    let dir = TempDir::new("commit-race");
    let folder = dir.path();
    let (mut busy, mut both) = (0, 0);
    for _ in 0..40 {
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<Result<Vec<PathBuf>, SaveError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|v| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        save(v, folder)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok: Vec<u32> = (0..2).filter(|&v| results[v as usize].is_ok()).collect();
        for result in &results {
            match result {
                Ok(_) => {}
                Err(SaveError::Write(CheckpointError::FolderBusy { folder: f })) => {
                    assert_eq!(f, folder);
                    busy += 1;
                }
                Err(other) => panic!("a save failed with {other}"),
            }
        }
        // Whole, and the one that said Ok if only one did.
        let found = versions.which(folder);
        match ok.as_slice() {
            [only] => assert_eq!(found, *only),
            [_, _] => both += 1,
            _ => panic!("neither save succeeded"),
        }
        assert_eq!(files(folder).len(), LAYERS + 1, "{:?}", files(folder));
    }
    println!("40 races: {busy} refused as busy, {both} serialised");
}

/// A tmpfs of `size` mounted on a fresh folder, unmounted when dropped.
struct Tmpfs(TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = TempDir::new("commit-tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "mounting a {size} tmpfs failed ({status:?}): the disk-full test needs root (CI runs \
             as root) to mount a small tmpfs"
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn free_bytes(folder: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(folder)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// The folder still holds version 0 whole, the same files, and the same free space.
#[track_caller]
fn assert_untouched(versions: &Versions, folder: &Path, listing: &[String], free: u64) {
    assert_eq!(versions.which(folder), 0);
    assert_eq!(files(folder), listing);
    assert_eq!(
        free_bytes(folder),
        free,
        "the failed save left data on the disk"
    );
}

#[test]
fn a_save_that_runs_out_of_disk_leaves_the_old_checkpoint_and_no_file_of_its_own() {
    let versions = Versions::new(2);
    // Room for one checkpoint (about 225 KB) and a third of another.
    let tmpfs = Tmpfs::mount("300k");
    let folder = tmpfs.0.path().join("model");

    // Sharded over sharded.
    save(0, &folder).unwrap();
    let (listing, free) = (files(&folder), free_bytes(&folder));
    let err = save(1, &folder).unwrap_err();
    assert!(
        matches!(err, SaveError::Write(CheckpointError::Write { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("room"), "{err}");
    assert_untouched(&versions, &folder, &listing, free);

    // Sharded over one file (the folder emptied first: the tmpfs holds one checkpoint).
    let single = SaveOptions::default();
    std::fs::remove_dir_all(&folder).unwrap();
    save_model(&stack(0), &folder, &[], None, &single).unwrap();
    let (listing, free) = (files(&folder), free_bytes(&folder));
    assert_eq!(listing, ["model.safetensors"]);
    save(1, &folder).unwrap_err();
    assert_untouched(&versions, &folder, &listing, free);

    // One file over shards.
    std::fs::remove_dir_all(&folder).unwrap();
    save(0, &folder).unwrap();
    let listing = files(&folder);
    save_model(&stack(1), &folder, &[], None, &single).unwrap_err();
    assert_eq!(versions.which(&folder), 0);
    assert_eq!(files(&folder), listing);
}
