//! A checkpoint changed by another process in the middle of a load (issue 19): truncated or
//! overwritten in place, the load fails with `CheckpointError::Modified` (never a `SIGBUS`) and
//! the caller's model is untouched; replaced by a rename, the load reads the old file whole.
//!
//! The change is made from the progress callback after the first wave, so it always falls
//! between two reads of the same load (every group is its own wave here).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::common::*;
use crate::loader::check_tiny_values;
use burn::backend::NdArray;
use patcher_burn::{LoadError, LoadOptions, Pretrained};
use patcher_core::{save_safetensors, CheckpointError, DType, HostTensor};

type B = NdArray;

/// Every parameter of the model, as f32 values.
fn snapshot(model: &Tiny<B>) -> Vec<Vec<f32>> {
    let mut all = Vec::new();
    for layer in &model.layers {
        all.push(values(layer.q_proj.weight.val()));
        all.push(values(layer.q_proj.bias.as_ref().unwrap().val()));
        all.push(values(layer.norm.gamma.val()));
        all.push(values(layer.experts.gate_up_proj.val()));
        all.push(values(layer.experts.down_proj.val()));
    }
    let positions = model.position_ids.val().into_data();
    all.push(positions.iter::<i64>().map(|p| p as f32).collect());
    all
}

/// The tiny checkpoint in a fresh folder, dated an hour back (so that any later write changes
/// its modification time whatever the filesystem's granularity).
fn fixture(
    name: &str,
) -> (
    TempDir,
    PathBuf,
    std::collections::HashMap<String, HostTensor<'static>>,
) {
    let dir = TempDir::new(name);
    let file = dir.path().join("model.safetensors");
    let tensors = tiny_checkpoint(DType::F32);
    write_checkpoint(&file, &tensors);
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let handle = File::options().write(true).open(&file).unwrap();
    handle.set_modified(an_hour_ago).unwrap();
    (dir, file, tensors)
}

/// Options that run `change` on the file once, after the load's first wave.
fn changing_after_first_wave(
    file: &Path,
    change: impl Fn(&Path) + Send + Sync + 'static,
) -> LoadOptions {
    let done = AtomicBool::new(false);
    let file = file.to_path_buf();
    LoadOptions::default()
        .threads(1)
        .max_bytes_in_flight(1)
        .on_progress(move |progress| {
            if progress.params_done < progress.params_total && !done.swap(true, Ordering::SeqCst) {
                change(&file);
            }
        })
}

/// Asserts a `Modified` error for `file` naming `what`, and that `model` is as it was.
fn assert_failed_untouched(
    result: Result<patcher_burn::Loaded<Tiny<B>>, LoadError>,
    file: &Path,
    what: &str,
    model: &Tiny<B>,
    before: &[Vec<f32>],
) {
    let error = match result {
        Ok(_) => panic!("the load must fail: the file changed during it"),
        Err(error) => error,
    };
    let message = error.to_string();
    match error {
        LoadError::Checkpoint(CheckpointError::Modified { file: f, change }) => {
            assert_eq!(f, file);
            assert!(change.contains(what), "{change}");
        }
        other => panic!("expected CheckpointError::Modified, got {other:?}"),
    }
    assert!(
        message.contains("changed while it was being read")
            && message.contains("load again once the writer is done"),
        "{message}"
    );
    assert_eq!(snapshot(model), before, "a failed load changed the model");
}

#[test]
fn a_checkpoint_truncated_during_a_load_is_a_typed_error() {
    let (dir, file, _) = fixture("truncated");
    let len = std::fs::metadata(&file).unwrap().len();
    let options = changing_after_first_wave(&file, move |file| {
        let handle = File::options().write(true).open(file).unwrap();
        handle.set_len(len / 2).unwrap();
    });
    let model = Tiny::<B>::new(&Default::default());
    let before = snapshot(&model);
    let result = Pretrained::from_path(dir.path())
        .options(options.clone())
        .load_into(&model);
    let size = format!("size {len} -> {} bytes", len / 2);
    assert_failed_untouched(result, &file, &size, &model, &before);
}

#[test]
fn a_checkpoint_overwritten_in_place_during_a_load_is_a_typed_error() {
    let (dir, file, _) = fixture("overwritten");
    let len = std::fs::metadata(&file).unwrap().len();
    let options = changing_after_first_wave(&file, move |file| {
        // The last 8 bytes, the size unchanged.
        let mut handle = File::options().write(true).open(file).unwrap();
        handle.seek(SeekFrom::Start(len - 8)).unwrap();
        handle.write_all(&[0x7f; 8]).unwrap();
    });
    let model = Tiny::<B>::new(&Default::default());
    let before = snapshot(&model);
    let result = Pretrained::from_path(dir.path())
        .options(options.clone())
        .load_into(&model);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
    assert_failed_untouched(result, &file, "mtime", &model, &before);
}

#[test]
fn a_checkpoint_replaced_by_rename_during_a_load_loads_the_old_file() {
    let (dir, file, tensors) = fixture("renamed");
    let options = changing_after_first_wave(&file, |file| {
        // Another writer saves a different checkpoint in its place (write + rename).
        let other = HostTensor::from_f32([1], &[42.0]);
        save_safetensors(file, [("other".to_string(), other)], None).unwrap();
    });
    let model = Tiny::<B>::new(&Default::default());
    let loaded = Pretrained::from_path(dir.path())
        .options(options.clone())
        .load_into(&model)
        .unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    check_tiny_values(&loaded.model, &tensors);
    // The folder now holds the other checkpoint.
    let reopened = patcher_core::Checkpoint::open(&file).unwrap();
    assert_eq!(reopened.keys().collect::<Vec<_>>(), ["other"]);
}
