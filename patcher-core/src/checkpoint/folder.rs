//! Saving a checkpoint into a folder as one commit: one `model.safetensors`, or shards and a
//! `model.safetensors.index.json` as transformers writes them, so that the folder holds the
//! whole old checkpoint or the whole new one whatever happens (the process killed at any
//! instant, the disk full, another save into the same folder).
//!
//! How, in order, under an exclusive lock on the folder:
//! 1. What the folder's checkpoint is made of now is read (the files a load would open), and the
//!    files of the same name that are not part of it (orphans of a failed or killed save) are
//!    removed.
//! 2. The new files are written under names no file has (shards get a unique tag when the
//!    standard names are in use), each through a synced temporary file and a rename.
//! 3. One step commits: the rename of `model.safetensors`, or of the index, over the old one
//!    (a load opens `model.safetensors` before an index, as transformers does); a sharded save
//!    over a single file commits when it removes that file. A failure before the commit removes
//!    what this save wrote.
//! 4. The old checkpoint's files are removed, the index first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, TryLockError};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use super::error::CheckpointError;
use super::index::MAX_INDEX_BYTES;
use super::write::{save_safetensors, write_atomic};
use crate::tensor::HostTensor;

/// Splits `tensors` (in order) into shards of at most `max_bytes` each (a larger tensor gets a
/// shard of its own), as transformers' `split_torch_state_dict_into_shards`; `None` is one
/// shard. The shards [`save_checkpoint`] takes.
///
/// ```
/// use patcher_core::{shard_by_size, HostTensor};
///
/// let tensor = |n: usize| HostTensor::from_f32([n], &vec![0.0; n]).into_owned();
/// let tensors = vec![("a".into(), tensor(4)), ("b".into(), tensor(4)), ("c".into(), tensor(16))];
/// let shards = shard_by_size(tensors, Some(32));
/// let keys: Vec<Vec<&str>> =
///     shards.iter().map(|s| s.iter().map(|(k, _)| k.as_str()).collect()).collect();
/// assert_eq!(keys, [vec!["a", "b"], vec!["c"]]);
/// ```
pub fn shard_by_size<'a>(
    tensors: Vec<(String, HostTensor<'a>)>,
    max_bytes: Option<u64>,
) -> Vec<Vec<(String, HostTensor<'a>)>> {
    let Some(max) = max_bytes else {
        return vec![tensors];
    };
    let mut shards: Vec<Vec<(String, HostTensor<'a>)>> = vec![Vec::new()];
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

/// Saves `shards` as the checkpoint `file` (`folder/model.safetensors`): one shard as that file,
/// several as `model-00001-of-0000N.safetensors`, ... and `model.safetensors.index.json` (keys
/// sorted, `metadata.total_size` and `total_parameters`, as transformers writes it), each file
/// with `metadata` as its `__metadata__`. Returns the files written, the index last.
///
/// The save is one commit (see the module docs): killed at any instant, failing on a full disk,
/// or raced by another save, the folder holds the complete old checkpoint or the complete new
/// one, and a load never sees a mix. A second save into a folder while one runs fails with
/// [`CheckpointError::FolderBusy`] and changes nothing. Files left by a save that was killed are
/// removed by the next save into the folder.
///
/// ```
/// use patcher_core::{save_checkpoint, Checkpoint, HostTensor};
/// # let dir = std::env::temp_dir().join(format!("patcher-doc-commit-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let a = HostTensor::from_f32([2], &[1.0, 2.0]);
/// let b = HostTensor::from_f32([2], &[3.0, 4.0]);
/// let shards = vec![vec![("a".to_string(), a)], vec![("b".to_string(), b)]];
/// let written = save_checkpoint(dir.join("model.safetensors"), shards, None)?;
/// assert_eq!(written.len(), 3); // two shards and the index
/// assert_eq!(Checkpoint::open(&dir)?.len(), 2);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_checkpoint<'a>(
    file: impl AsRef<Path>,
    shards: Vec<Vec<(String, HostTensor<'a>)>>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<PathBuf>, CheckpointError> {
    let names = Names::of(file.as_ref());
    let _save = tracing::debug_span!("save_checkpoint", file = %names.single.display()).entered();
    let started = std::time::Instant::now();
    let _lock = FolderLock::acquire(&names.folder)?;
    let live = names.live_files();
    names.remove_orphans(live.as_deref());
    let shard_count = shards.len();
    let written = if shard_count <= 1 {
        let tensors = shards.into_iter().flatten();
        save_safetensors(&names.single, tensors, metadata)?;
        vec![names.single.clone()]
    } else {
        names.write_sharded(shards, metadata, live.as_deref())?
    };
    // The commit point is behind: what follows only removes the old checkpoint's files.
    tracing::debug!(
        shards = shard_count,
        files = written.len(),
        replaced = live.as_ref().map_or(0, Vec::len),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "committed"
    );
    names.remove_all_but(&written);
    Ok(written)
}

/// The names of one checkpoint in its folder.
struct Names {
    folder: PathBuf,
    /// `model` of `model.safetensors`.
    stem: String,
    /// `folder/model.safetensors`.
    single: PathBuf,
    /// `folder/model.safetensors.index.json`.
    index: PathBuf,
}

impl Names {
    fn of(file: &Path) -> Self {
        let folder = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        Self {
            single: folder.join(format!("{stem}.safetensors")),
            index: folder.join(format!("{stem}.safetensors.index.json")),
            folder,
            stem,
        }
    }

    /// The files of the checkpoint a load opens now: the single file if there is one, else the
    /// index and the shards it names; `None` when that cannot be told (an index that cannot be
    /// read), and then no file of the checkpoint's name counts as an orphan.
    fn live_files(&self) -> Option<Vec<PathBuf>> {
        if self.single.exists() {
            return Some(vec![self.single.clone()]);
        }
        if !self.index.exists() {
            return Some(Vec::new());
        }
        let shards = read_shard_names(&self.index)?;
        let mut live = vec![self.index.clone()];
        live.extend(shards.into_iter().map(|name| self.folder.join(name)));
        Some(live)
    }

    /// Whether `name` is one of this checkpoint's files: the single file, the index, or a
    /// shard (`model-00001-of-00003.safetensors`, or with a save's tag before the extension).
    fn is_ours(&self, name: &str) -> bool {
        name == format!("{}.safetensors", self.stem)
            || name == format!("{}.safetensors.index.json", self.stem)
            || is_shard_of(name, &self.stem)
    }

    /// Removes the checkpoint's files that `live` does not list: what a killed or failed save
    /// left (and that no load opens).
    fn remove_orphans(&self, live: Option<&[PathBuf]>) {
        if let Some(live) = live {
            self.remove_all_but(live);
        }
    }

    /// Removes every file of this checkpoint but `keep`, the index first, so that no index is
    /// ever left naming a removed shard. Best effort: what fails to go is an orphan, removed by
    /// the next save.
    fn remove_all_but(&self, keep: &[PathBuf]) {
        let Ok(entries) = std::fs::read_dir(&self.folder) else {
            return;
        };
        let mut doomed: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .filter(|e| self.is_ours(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .filter(|path| !keep.contains(path))
            .collect();
        doomed.sort_by_key(|path| *path != self.index);
        for path in doomed {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Writes the shards and the index; commits (see the module docs); on a failure before the
    /// commit, removes what it wrote.
    fn write_sharded(
        &self,
        shards: Vec<Vec<(String, HostTensor<'_>)>>,
        metadata: Option<HashMap<String, String>>,
        live: Option<&[PathBuf]>,
    ) -> Result<Vec<PathBuf>, CheckpointError> {
        let count = shards.len();
        let tag = self.shard_tag(count);
        let mut written = Vec::with_capacity(count + 1);
        let result = self.write_shards_and_index(shards, metadata, &tag, &mut written);
        // A sharded save over a single file commits when that file goes (a load opens it first).
        let result = result.and_then(|()| match live {
            Some([single]) if *single == self.single => std::fs::remove_file(single)
                .map_err(|source| CheckpointError::Io { path: single.clone(), source }),
            _ => Ok(()),
        });
        match result {
            Ok(()) => Ok(written),
            Err(error) => {
                // Not committed: the old checkpoint is still what a load opens. If the index
                // was renamed over an old index the save committed, and only a failed removal
                // of a single file can come after that, so this never removes a committed
                // index while it is the checkpoint.
                for path in written.iter().rev() {
                    let _ = std::fs::remove_file(path);
                }
                Err(error)
            }
        }
    }

    fn write_shards_and_index(
        &self,
        shards: Vec<Vec<(String, HostTensor<'_>)>>,
        metadata: Option<HashMap<String, String>>,
        tag: &str,
        written: &mut Vec<PathBuf>,
    ) -> Result<(), CheckpointError> {
        let count = shards.len();
        let mut weight_map = BTreeMap::new();
        let (mut total_size, mut total_parameters) = (0u64, 0usize);
        for (i, tensors) in shards.into_iter().enumerate() {
            let name = format!("{}-{:05}-of-{count:05}{tag}.safetensors", self.stem, i + 1);
            for (key, tensor) in &tensors {
                weight_map.insert(key.clone(), name.clone());
                total_size += tensor.bytes.len() as u64;
                total_parameters += tensor.num_elements();
            }
            let path = self.folder.join(&name);
            save_safetensors(&path, tensors, metadata.clone())?;
            written.push(path);
        }
        // As transformers writes it: keys sorted, two-space indent, a final newline.
        let index = serde_json::json!({
            "metadata": { "total_parameters": total_parameters, "total_size": total_size },
            "weight_map": weight_map,
        });
        let text = serde_json::to_string_pretty(&index).map_err(|e| CheckpointError::Write {
            path: self.index.clone(),
            source: safetensors::SafeTensorError::IoError(std::io::Error::other(e)),
        })?;
        // Pushed first: if the rename fails, the temporary is gone and removing a file that
        // is not there is harmless; if it succeeded, the save has committed.
        write_atomic(&self.index, format!("{text}\n").as_bytes())?;
        written.push(self.index.clone());
        Ok(())
    }

    /// `""` when transformers' shard names of a `count`-shard checkpoint are free, else a tag
    /// unique to this save (`-1a2b3c4d`), so that no shard of the live checkpoint is ever
    /// overwritten before the commit.
    fn shard_tag(&self, count: usize) -> String {
        let taken = |tag: &str| {
            (1..=count).any(|i| {
                let name = format!("{}-{i:05}-of-{count:05}{tag}.safetensors", self.stem);
                self.folder.join(name).exists()
            })
        };
        if !taken("") {
            return String::new();
        }
        loop {
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            let tag = format!("-{:08x}", random as u32);
            if !taken(&tag) {
                return tag;
            }
        }
    }
}

/// `stem-00001-of-00003.safetensors`, or `stem-00001-of-00003-1a2b3c4d.safetensors` (a save's
/// tag, see `Names::shard_tag`).
fn is_shard_of(name: &str, stem: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(stem)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".safetensors"))
    else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let hex = |s: &str| s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let Some((i, rest)) = rest.split_once("-of-") else {
        return false;
    };
    let (count, tag) = rest.split_once('-').unwrap_or((rest, ""));
    digits(i, 5) && digits(count, 5) && (tag.is_empty() || hex(tag))
}

/// The shard file names an index maps to, or `None` if it cannot be read as an index.
fn read_shard_names(index: &Path) -> Option<HashSet<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let size = std::fs::metadata(index).ok()?.len();
    if size > MAX_INDEX_BYTES {
        return None;
    }
    let text = std::fs::read(index).ok()?;
    let index: Index = serde_json::from_slice(&text).ok()?;
    Some(index.weight_map.into_values().collect())
}

/// An exclusive lock on a folder while a save writes into it (an advisory `flock` on the folder
/// itself on Unix, so nothing is left in it; a `.burn-patcher-save.lock` file elsewhere).
/// Released when dropped, or by the system when the process dies, so a killed save never leaves
/// a folder locked.
struct FolderLock(#[allow(dead_code)] File);

impl FolderLock {
    fn acquire(folder: &Path) -> Result<Self, CheckpointError> {
        let io = |source| CheckpointError::Io { path: folder.to_path_buf(), source };
        #[cfg(unix)]
        let file = File::open(folder).map_err(io)?;
        #[cfg(not(unix))]
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(folder.join(".burn-patcher-save.lock"))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self(file)),
            Err(TryLockError::WouldBlock) => {
                Err(CheckpointError::FolderBusy { folder: folder.to_path_buf() })
            }
            Err(TryLockError::Error(source)) => Err(io(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_shard_of;

    #[test]
    fn shard_names_with_and_without_a_tag() {
        assert!(is_shard_of("model-00001-of-00003.safetensors", "model"));
        assert!(is_shard_of(
            "model-00001-of-00003-0a1b2c3d.safetensors",
            "model"
        ));
        assert!(!is_shard_of(
            "model-00001-of-00003-0a1b2c3.safetensors",
            "model"
        ));
        assert!(!is_shard_of(
            "model-00001-of-00003-xyzxyzxy.safetensors",
            "model"
        ));
        assert!(!is_shard_of("model-0001-of-00003.safetensors", "model"));
        assert!(!is_shard_of("other-00001-of-00003.safetensors", "model"));
        assert!(!is_shard_of("model.safetensors", "model"));
    }
}
