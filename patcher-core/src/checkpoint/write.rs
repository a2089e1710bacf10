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
/// The file is written next to `path` under a temporary name and then renamed over it, so a
/// checkpoint that is still memory-mapped (e.g. the one the model was loaded from) is never
/// truncated under its reader.
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
        let expected = tensor.num_elements() * tensor.dtype.size_in_bytes();
        if tensor.bytes.len() != expected {
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

    let temporary = temporary_path(path);
    let result = safetensors::serialize_to_file(views, metadata, &temporary)
        .map_err(|source| CheckpointError::Write {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|()| {
            std::fs::rename(&temporary, path).map_err(|source| CheckpointError::Write {
                path: path.to_path_buf(),
                source: safetensors::SafeTensorError::IoError(source),
            })
        });
    if result.is_err() {
        // Best effort: the temporary file is useless after a failure.
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// `<name>.tmp-<pid>-<n>` in the same folder, so the final rename stays on one filesystem and
/// concurrent saves never share a temporary file.
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}-{n}", std::process::id()));
    path.with_file_name(name)
}
