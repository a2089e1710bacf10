//! Finding the checkpoint behind a path, and reading a sharded index
//! (`model.safetensors.index.json`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::error::CheckpointError;
use super::keys::first_duplicate_in_weight_map;

/// What a path given to `Checkpoint::open` designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// One `.safetensors` file.
    Single(PathBuf),
    /// A sharded index JSON.
    Index(PathBuf),
}

const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

/// Resolves a file (index if it ends in `.json`, safetensors otherwise) or a folder (the
/// transformers names first, then a lone index, then a lone safetensors file).
pub(crate) fn resolve(path: &Path) -> Result<Source, CheckpointError> {
    let io = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        check_regular(path)?;
        let is_json = path.extension().is_some_and(|e| e == "json");
        return Ok(if is_json {
            Source::Index(path.to_path_buf())
        } else {
            Source::Single(path.to_path_buf())
        });
    }
    // Same order as transformers' `from_pretrained`: `model.safetensors` first, then the index.
    for (name, make) in [
        (SINGLE, Source::Single as fn(PathBuf) -> Source),
        (INDEX, Source::Index),
    ] {
        let candidate = path.join(name);
        if candidate.is_file() {
            return Ok(make(candidate));
        }
    }
    let mut indexes = Vec::new();
    let mut singles = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".safetensors.index.json") {
            indexes.push(entry.path());
        } else if name.ends_with(".safetensors") {
            singles.push(entry.path());
        }
    }
    match (indexes.len(), singles.len()) {
        (1, _) => Ok(Source::Index(indexes.remove(0))),
        (0, 1) => Ok(Source::Single(singles.remove(0))),
        _ => {
            let mut found: Vec<_> = indexes
                .iter()
                .chain(&singles)
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            found.sort();
            // A folder may hold thousands of candidates: the message names the first few.
            const SHOWN: usize = 16;
            let more = found.len().saturating_sub(SHOWN);
            found.truncate(SHOWN);
            let found = match (found.is_empty(), more) {
                (true, _) => "none".to_string(),
                (false, 0) => found.join(", "),
                (false, more) => format!("{} and {more} more", found.join(", ")),
            };
            Err(CheckpointError::NoCheckpointInFolder { dir: path.to_path_buf(), found })
        }
    }
}

/// Fails with [`CheckpointError::NotAFile`] unless `path` is a regular file (links followed).
/// Checked before a file is opened: opening a FIFO for reading blocks until a writer comes, and
/// a character device may never end.
pub(crate) fn check_regular(path: &Path) -> Result<(), CheckpointError> {
    let meta = std::fs::metadata(path)
        .map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
    if meta.is_file() {
        return Ok(());
    }
    Err(CheckpointError::NotAFile {
        path: path.to_path_buf(),
        kind: file_kind(&meta.file_type()).to_string(),
    })
}

/// A word for a file type that is not a regular file.
fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_block_device() {
            return "block device";
        }
        if file_type.is_char_device() {
            return "character device";
        }
    }
    if file_type.is_dir() {
        "folder"
    } else {
        "special file"
    }
}

/// The largest index read (256 MiB): a real index lists tensor names and shard names only,
/// a few MiB for the largest published models.
pub(crate) const MAX_INDEX_BYTES: u64 = 256 << 20;

/// The parts of the index we use; `metadata` (total size) is not needed.
#[derive(serde::Deserialize)]
struct IndexFile {
    weight_map: BTreeMap<String, String>,
}

/// Reads the `weight_map` of an index: tensor name to shard path as written in the file.
///
/// The file must be a regular file of at most [`MAX_INDEX_BYTES`], and its `weight_map` must not
/// name a tensor twice.
pub(crate) fn read_weight_map(index: &Path) -> Result<BTreeMap<String, String>, CheckpointError> {
    check_regular(index)?;
    let io = |source| CheckpointError::Io { path: index.to_path_buf(), source };
    let size = std::fs::metadata(index).map_err(io)?.len();
    if size > MAX_INDEX_BYTES {
        return Err(CheckpointError::IndexTooLarge {
            index: index.to_path_buf(),
            size,
            max: MAX_INDEX_BYTES,
        });
    }
    let mut text = Vec::new();
    // `take`: the file may have grown since it was measured.
    std::fs::File::open(index)
        .and_then(|file| file.take(MAX_INDEX_BYTES + 1).read_to_end(&mut text))
        .map_err(io)?;
    let parsed: IndexFile = serde_json::from_slice(&text)
        .map_err(|source| CheckpointError::IndexJson { index: index.to_path_buf(), source })?;
    if let Some(key) = first_duplicate_in_weight_map(&text) {
        return Err(CheckpointError::DuplicateIndexKey { index: index.to_path_buf(), key });
    }
    Ok(parsed.weight_map)
}

/// Whether a shard path from the index stays inside the index's folder. Only the path's
/// components are checked, not where symlinks lead: the Hugging Face cache links shards to
/// blobs elsewhere, and that is legitimate.
pub(crate) fn stays_inside(shard: &str) -> bool {
    let path = Path::new(shard);
    !shard.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}
