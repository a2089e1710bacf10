//! A checkpoint file changed by another process while it is open (issue 19): truncated or
//! overwritten in place, a read is a typed `CheckpointError::Modified` (never a `SIGBUS`, never
//! silently mixed bytes); replaced by a rename, the open checkpoint still reads the old file.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use patcher_core::{save_safetensors, Checkpoint, CheckpointError, HostTensor};

/// `a` and `b`: two f32 tensors of 1024 distinct values each (`b` from 1024 on).
fn values(offset: usize) -> Vec<f32> {
    (0..1024).map(|i| (offset + i) as f32 * 0.25).collect()
}

/// Writes the two tensors to `dir/model.safetensors` and dates it an hour back, so that any
/// later write gives it another modification time whatever the filesystem's granularity.
fn write_checkpoint(dir: &Path) -> PathBuf {
    let file = dir.join("model.safetensors");
    let tensors = [("a", 0), ("b", 1024)].map(|(name, offset)| {
        (
            name.to_string(),
            HostTensor::from_f32([1024], &values(offset)),
        )
    });
    save_safetensors(&file, tensors, None).unwrap();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    file
}

/// Asserts that `error` is `Modified` for `file`, naming `what` in its change.
fn assert_modified(error: CheckpointError, file: &Path, what: &str) {
    let message = error.to_string();
    match error {
        CheckpointError::Modified { file: f, change } => {
            assert_eq!(f, file);
            assert!(change.contains(what), "{change}");
            assert!(
                message.contains("changed while it was being read")
                    && message.contains("load again once the writer is done"),
                "{message}"
            );
        }
        other => panic!("expected CheckpointError::Modified, got {other:?}"),
    }
}

#[test]
fn a_file_truncated_after_open_is_a_modified_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_checkpoint(dir.path());
    let checkpoint = Checkpoint::open(&file).unwrap();
    let a = checkpoint.get("a").unwrap();
    let b = checkpoint.get("b").unwrap();
    assert_eq!(a.read().unwrap().to_f32_vec().unwrap(), values(0));

    // Cut in the middle of `b`: its bytes are no longer there, `a`'s still are but the file is
    // not the one opened.
    let len = std::fs::metadata(&file).unwrap().len();
    File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 2048)
        .unwrap();
    let size = format!("size {len} -> {} bytes", len - 2048);
    assert_modified(b.read().unwrap_err(), &file, &size);
    let mut buffer = vec![0u8; b.num_bytes()];
    assert_modified(b.read_into(&mut buffer).unwrap_err(), &file, &size);
    assert_modified(a.read().unwrap_err(), &file, &size);
    // To nothing at all.
    File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_modified(
        b.read().unwrap_err(),
        &file,
        &format!("size {len} -> 0 bytes"),
    );
}

#[test]
fn bytes_overwritten_in_place_after_open_are_a_modified_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_checkpoint(dir.path());
    let checkpoint = Checkpoint::open(&file).unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    // The last 16 bytes (the end of `b`) overwritten, the size unchanged.
    let mut writer = OpenOptions::new().write(true).open(&file).unwrap();
    writer.seek(SeekFrom::Start(len - 16)).unwrap();
    writer.write_all(&[0xff; 16]).unwrap();
    drop(writer);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
    let error = checkpoint.get("b").unwrap().read().unwrap_err();
    assert_modified(error, &file, "mtime");
    let error = checkpoint.get("a").unwrap().read().unwrap_err();
    assert_modified(error, &file, "mtime");
}

#[test]
fn a_file_replaced_by_rename_after_open_still_reads_the_old_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_checkpoint(dir.path());
    let checkpoint = Checkpoint::open(&file).unwrap();
    // Another writer saves a different checkpoint in its place (write + rename).
    let other = HostTensor::from_f32([3], &[7.0, 8.0, 9.0]);
    save_safetensors(&file, [("a".to_string(), other)], None).unwrap();
    assert_eq!(
        Checkpoint::open(&file).unwrap().keys().collect::<Vec<_>>(),
        ["a"]
    );
    for (name, offset) in [("a", 0), ("b", 1024)] {
        let tensor = checkpoint.get(name).unwrap().read().unwrap();
        assert_eq!(tensor.shape, [1024]);
        assert_eq!(tensor.to_f32_vec().unwrap(), values(offset), "{name}");
    }
}

#[test]
fn reads_outside_a_tensor_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_checkpoint(dir.path());
    let checkpoint = Checkpoint::open(&file).unwrap();
    let b = checkpoint.get("b").unwrap();
    assert_eq!(b.num_bytes(), 4096);
    let error = b.read_into(&mut [0u8; 4095]).unwrap_err();
    assert!(
        matches!(
            error,
            CheckpointError::ReadRange { ref key, start: 0, end: 4095, size: 4096 } if key == "b"
        ),
        "{error:?}"
    );
    let error = b.read_range_into(4090, &mut [0u8; 8]).unwrap_err();
    assert!(
        matches!(
            error,
            CheckpointError::ReadRange { start: 4090, end: 4098, size: 4096, .. }
        ),
        "{error:?}"
    );
    // A range inside: values 1000..1002 of `b`.
    let mut part = [0u8; 8];
    b.read_range_into(4000, &mut part).unwrap();
    let part: Vec<f32> = bytemuck::pod_collect_to_vec(&part);
    assert_eq!(part, values(1024)[1000..1002]);
}
