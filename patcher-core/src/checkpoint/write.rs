//! Writing host tensors to a safetensors file (saving a model back in checkpoint layout).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use safetensors::{Dtype, View};

use super::dtype::to_safetensors;
use super::error::CheckpointError;
use crate::tensor::HostTensor;

/// Lets safetensors stream a [`HostTensor`]'s bytes without copying them.
struct Out<'a>(HostTensor<'a>);

impl View for Out<'_> {
    fn dtype(&self) -> Dtype {
        to_safetensors(self.0.dtype)
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0.bytes)
    }
    fn data_len(&self) -> usize {
        self.0.bytes.len()
    }
}

/// Writes `tensors` to the safetensors file `path`, with optional `__metadata__` (transformers
/// writes `{"format": "pt"}`). Each tensor's bytes are written once, straight from the tensor.
///
/// The write is atomic: the file is written next to `path` under a temporary name
/// (`.<name>.tmp-<pid>-<n>`), synced to disk, then renamed over `path` (and the folder synced,
/// where the platform allows). A checkpoint that is still open (e.g. the one a model is being
/// loaded from) is never truncated under its reader, which keeps reading the old file whole, a crash leaves either the old file or
/// the new one, and no temporary file is left behind on an error. Temporary files left by a
/// process that was killed while saving are removed by the next save into the same folder
/// (on Linux, where `/proc` tells whether their writer still runs).
///
/// Fails if a name is given twice or a tensor's byte length does not match its shape.
pub fn save_safetensors<'a>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (String, HostTensor<'a>)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let mut seen = HashSet::new();
    let mut views = Vec::new();
    for (name, tensor) in tensors {
        let expected = tensor
            .shape
            .iter()
            .try_fold(tensor.dtype.size_in_bytes(), |n, &d| n.checked_mul(d));
        if expected != Some(tensor.bytes.len()) {
            let expected = expected.map_or("more than usize::MAX".into(), |n| n.to_string());
            return Err(CheckpointError::InvalidTensor {
                path: path.to_path_buf(),
                reason: format!(
                    "it has {} bytes but a {} tensor of shape {:?} needs {expected}; build it \
                     with HostTensor::new, which checks this",
                    tensor.bytes.len(),
                    tensor.dtype,
                    tensor.shape
                ),
                key: name,
            });
        }
        if !seen.insert(name.clone()) {
            return Err(CheckpointError::InvalidTensor {
                path: path.to_path_buf(),
                key: name,
                reason: "the name is given twice; each tensor name must appear once".into(),
            });
        }
        views.push((name, Out(tensor)));
    }

    write_through_temporary(path, |temporary| {
        safetensors::serialize_to_file(views, metadata, temporary)
    })
}

/// Writes `bytes` to `path` atomically, as [`save_safetensors`] writes its files (temporary file
/// `.<name>.tmp-<pid>-<n>` in the same folder, synced, renamed over `path`, folder synced; no
/// temporary file left on an error; stale temporary files of dead writers removed first). For
/// the other files of a checkpoint folder, such as a sharded index.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_through_temporary(path.as_ref(), |temporary| {
        std::fs::write(temporary, bytes).map_err(safetensors::SafeTensorError::IoError)
    })
}

/// Runs `write` on a temporary path beside `path`, then syncs and renames it over `path`.
fn write_through_temporary(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), safetensors::SafeTensorError>,
) -> Result<(), CheckpointError> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    remove_stale_temporaries(folder);
    let temporary = temporary_path(path);
    let write_error = |source: std::io::Error| CheckpointError::Write {
        path: path.to_path_buf(),
        source: safetensors::SafeTensorError::IoError(source),
    };
    let result = write(&temporary)
        .map_err(|source| CheckpointError::Write { path: path.to_path_buf(), source })
        // The bytes reach the disk before the name does: after a crash, `path` holds either the
        // old file or the whole new one.
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&temporary)
                .and_then(|file| file.sync_all())
                .map_err(write_error)
        })
        .and_then(|()| std::fs::rename(&temporary, path).map_err(write_error));
    if result.is_err() {
        // Best effort: the temporary file is useless after a failure.
        let _ = std::fs::remove_file(&temporary);
    } else {
        sync_folder(folder);
    }
    result
}

/// Makes the rename durable (best effort: not every platform can sync a folder).
fn sync_folder(folder: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = folder;
}

/// Marks the temporary files of [`save_safetensors`]: `.<name>.tmp-<pid>-<n>`.
const TEMPORARY_MARK: &str = ".tmp-";

/// `.<name>.tmp-<pid>-<n>` in the same folder (hidden, so listings and folder resolution skip
/// it), so the final rename stays on one filesystem and concurrent saves never share a
/// temporary file. The writer's process id in the name lets a later save tell a temporary file
/// left by a killed process from one being written now.
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!("{TEMPORARY_MARK}{}-{n}", std::process::id()));
    path.with_file_name(name)
}

/// The writer's process id, if `name` is a temporary file name of [`save_safetensors`] (also
/// the earlier `<name>.tmp-<pid>-<n>` form, without the leading dot).
pub(crate) fn temporary_owner(name: &str) -> Option<u32> {
    let at = name.rfind(TEMPORARY_MARK)?;
    if at == 0 || name == "." {
        return None;
    }
    let (pid, n) = name[at + TEMPORARY_MARK.len()..].split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the temporary files in `folder` that a save left when its process was killed: those
/// whose writer process no longer exists. Only where that can be told (Linux' `/proc`); a
/// temporary file of a live process, this one included, is never touched. Best effort. (A
/// writer in another PID namespace, e.g. another container sharing the folder, cannot be seen
/// and counts as gone.)
fn remove_stale_temporaries(folder: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_owner) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if pid != me && is_file && !proc.join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
