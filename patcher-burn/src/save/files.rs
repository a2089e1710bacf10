//! Where a save writes: one safetensors file, or shards and an index as transformers writes
//! them (`model-00001-of-00003.safetensors`, `model.safetensors.index.json`), committed as one
//! by patcher-core's `save_checkpoint`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use patcher_core::{save_checkpoint, CheckpointError, HostTensor};

use super::SaveError;

/// The file name a save into a folder uses, as transformers.
const WEIGHTS_NAME: &str = "model.safetensors";

/// Resolves `path`: a `.safetensors` file, or a folder (created if needed) that gets
/// `model.safetensors`.
pub(crate) fn target_file(path: &Path) -> Result<PathBuf, SaveError> {
    if path.extension().is_some_and(|e| e == "safetensors") && !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    std::fs::create_dir_all(path).map_err(|source| io_error(path, source))?;
    Ok(path.join(WEIGHTS_NAME))
}

/// Writes the shards as the checkpoint `file` in one commit ([`save_checkpoint`]): one shard
/// as `file` itself, several with an index. Returns the written paths (shards, then the index).
pub(crate) fn write(
    file: &Path,
    shards: Vec<Vec<(String, HostTensor<'static>)>>,
) -> Result<Vec<PathBuf>, SaveError> {
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    Ok(save_checkpoint(file, shards, Some(metadata))?)
}

fn io_error(path: &Path, source: std::io::Error) -> SaveError {
    SaveError::Write(CheckpointError::Io { path: path.to_path_buf(), source })
}
