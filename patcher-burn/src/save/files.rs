//! Where a save writes: one safetensors file, or shards and an index as transformers writes
//! them (`model-00001-of-00003.safetensors`, `model.safetensors.index.json`); and the clean-up
//! of what an earlier save into the same folder left that would shadow the new files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use patcher_core::{save_safetensors, write_atomic, CheckpointError, HostTensor};

use crate::load::LoadError;

/// The file name a save into a folder uses, as transformers.
const WEIGHTS_NAME: &str = "model.safetensors";

/// Resolves `path`: a `.safetensors` file, or a folder (created if needed) that gets
/// `model.safetensors`.
pub(crate) fn target_file(path: &Path) -> Result<PathBuf, LoadError> {
    if path.extension().is_some_and(|e| e == "safetensors") && !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    std::fs::create_dir_all(path).map_err(|source| io_error(path, source))?;
    Ok(path.join(WEIGHTS_NAME))
}

/// Splits `tensors` (in order) into shards of at most `max_bytes` each (a larger tensor gets a
/// shard of its own), as transformers' `split_torch_state_dict_into_shards`.
pub(crate) fn shard(
    tensors: Vec<(String, HostTensor<'static>)>,
    max_bytes: Option<u64>,
) -> Vec<Vec<(String, HostTensor<'static>)>> {
    let Some(max) = max_bytes else {
        return vec![tensors];
    };
    let mut shards: Vec<Vec<(String, HostTensor<'static>)>> = vec![Vec::new()];
    let mut size = 0u64;
    for (key, tensor) in tensors {
        let bytes = tensor.bytes.len() as u64;
        let current = shards.last().map_or(0, Vec::len);
        if current > 0 && size + bytes > max {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        if let Some(last) = shards.last_mut() {
            last.push((key, tensor));
        }
    }
    shards
}

/// Writes the shards next to `file` and returns the written paths (shards, then the index).
/// One shard is written as `file` itself, with no index.
pub(crate) fn write(
    file: &Path,
    shards: Vec<Vec<(String, HostTensor<'static>)>>,
) -> Result<Vec<PathBuf>, LoadError> {
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let (folder, stem) = split(file);
    let count = shards.len();
    if count <= 1 {
        let tensors = shards.into_iter().flatten();
        save_safetensors(file, tensors, Some(metadata))?;
        remove_stale(&folder, &stem, &[file.to_path_buf()]);
        return Ok(vec![file.to_path_buf()]);
    }

    let mut written = Vec::with_capacity(count + 1);
    let mut weight_map = BTreeMap::new();
    let mut total_size = 0u64;
    let mut total_parameters = 0usize;
    for (i, tensors) in shards.into_iter().enumerate() {
        let name = format!("{stem}-{:05}-of-{count:05}.safetensors", i + 1);
        for (key, tensor) in &tensors {
            weight_map.insert(key.clone(), name.clone());
            total_size += tensor.bytes.len() as u64;
            total_parameters += tensor.num_elements();
        }
        let path = folder.join(&name);
        save_safetensors(&path, tensors, Some(metadata.clone()))?;
        written.push(path);
    }
    // As transformers writes it: keys sorted, two-space indent, a final newline.
    let index = serde_json::json!({
        "metadata": { "total_parameters": total_parameters, "total_size": total_size },
        "weight_map": weight_map,
    });
    let index_path = folder.join(format!("{stem}.safetensors.index.json"));
    let text = serde_json::to_string_pretty(&index).map_err(|e| LoadError::Unsupported {
        key: index_path.display().to_string(),
        message: format!("could not serialise the index: {e}"),
    })?;
    write_atomic(&index_path, format!("{text}\n").as_bytes())?;
    written.push(index_path);
    remove_stale(&folder, &stem, &written);
    Ok(written)
}

/// `(folder, stem)` of `folder/stem.safetensors`.
fn split(file: &Path) -> (PathBuf, String) {
    let folder = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    (folder, stem)
}

/// Removes the single file, index and shards of an earlier save of `stem` in `folder` that this
/// save did not write: a stale `model.safetensors` would be opened before a new index, and
/// stale shards would be listed by nothing. Best effort.
fn remove_stale(folder: &Path, stem: &str, written: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let single = format!("{stem}.safetensors");
    let index = format!("{stem}.safetensors.index.json");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == single || name == index || is_shard_of(&name, stem);
        if ours && !written.contains(&entry.path()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `stem-00001-of-00003.safetensors`.
fn is_shard_of(name: &str, stem: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(stem)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".safetensors"))
    else {
        return false;
    };
    let parts: Vec<&str> = rest.split("-of-").collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| p.len() == 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn io_error(path: &Path, source: std::io::Error) -> LoadError {
    LoadError::Checkpoint(CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}
