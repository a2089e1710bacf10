//! Safetensors checkpoints: one file or a sharded index, with lazy per-tensor handles.
//!
//! Opening opens every file and reads its header only; a tensor's bytes are read when asked for
//! ([`TensorRef::read`], or [`TensorRef::read_into`] straight into a caller's buffer). All
//! shards go into one key map, so a conversion group (e.g. the experts of one layer) may span
//! shards.
//!
//! # Files that change during a load
//!
//! Tensors are read with positioned reads (`pread`) from the files opened by
//! [`Checkpoint::open`], not through a memory map: a mapped file that another process truncates
//! kills the reader with `SIGBUS`. After each tensor's read the file's size, modification time
//! and inode are compared (`fstat` on the same descriptor) with what they were at open; a file
//! truncated, appended to or overwritten in place since is [`CheckpointError::Modified`], never
//! a signal nor silently mixed bytes. (An overwrite within the filesystem's timestamp granularity
//! of the previous write, a few milliseconds, and of the same size, cannot be told apart.)
//!
//! A file *replaced* by a rename (as [`save_safetensors`] and transformers' `save_pretrained`
//! write) is not an error: the open file still reads the old one, whole, so the load is a
//! consistent snapshot of the checkpoint as it was opened.

mod dtype;
mod error;
mod folder;
mod index;
mod keys;
mod read;
mod shard;
mod write;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub use error::CheckpointError;
pub use folder::{save_checkpoint, shard_by_size};
pub use write::{save_safetensors, write_atomic};

use crate::tensor::{DType, HostTensor, TensorMeta};
use index::Source;
use shard::{Entry, Shard};

/// An opened safetensors checkpoint (single file or sharded).
pub struct Checkpoint {
    /// The file that was opened: the `.safetensors` file or the index.
    path: PathBuf,
    files: Vec<Shard>,
    /// Sorted by name, so listings are deterministic.
    tensors: BTreeMap<String, Entry>,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("files", &self.files.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A lazy handle on one tensor of a [`Checkpoint`]: its metadata, and where its bytes are.
/// Nothing is read until [`read`](Self::read) or [`read_into`](Self::read_into).
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    name: &'a str,
    dtype: DType,
    shape: &'a [usize],
    shard: &'a Shard,
    /// Byte range in the shard's file.
    start: u64,
    len: usize,
}

impl<'a> TensorRef<'a> {
    /// The tensor's name in the checkpoint.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape, outermost dimension first.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// Dtype and shape.
    pub fn meta(&self) -> TensorMeta {
        TensorMeta::new(self.dtype, self.shape)
    }

    /// Size of the tensor's data in bytes.
    pub fn num_bytes(&self) -> usize {
        self.len
    }

    /// The safetensors file holding this tensor.
    pub fn file(&self) -> &'a Path {
        &self.shard.path
    }

    /// Reads the tensor into a new host tensor that owns its bytes (little-endian, row-major;
    /// in a `Vec<u8>`, so not aligned to the element size in general: the cast paths read
    /// unaligned).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Modified`] if the file was truncated or overwritten since the
    /// checkpoint was opened, [`CheckpointError::Io`] if reading failed.
    pub fn read(&self) -> Result<HostTensor<'static>, CheckpointError> {
        let mut bytes = vec![0u8; self.len];
        self.read_into(&mut bytes)?;
        Ok(HostTensor::new(self.dtype, self.shape, bytes))
    }

    /// Reads the tensor's little-endian, row-major bytes straight into `dst` (one copy from the
    /// page cache, e.g. into a parameter's final buffer), which must be exactly
    /// [`num_bytes`](Self::num_bytes) long.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::ReadRange`] if `dst` has the wrong size; otherwise as
    /// [`read`](Self::read). On error `dst` may hold part of the data.
    pub fn read_into(&self, dst: &mut [u8]) -> Result<(), CheckpointError> {
        if dst.len() != self.len {
            return Err(self.out_of_range(0, dst.len()));
        }
        self.shard.read_at(self.start, dst)
    }

    /// Reads bytes `offset..offset + dst.len()` of the tensor's data into `dst`: a part of a
    /// large tensor through a small buffer (e.g. rows of a matrix to transpose while it is
    /// still in cache).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::ReadRange`] if the range is not inside the tensor; otherwise as
    /// [`read`](Self::read).
    pub fn read_range_into(&self, offset: usize, dst: &mut [u8]) -> Result<(), CheckpointError> {
        let end = offset.checked_add(dst.len()).filter(|&end| end <= self.len);
        if end.is_none() {
            return Err(self.out_of_range(offset, offset.saturating_add(dst.len())));
        }
        self.shard.read_at(self.start + offset as u64, dst)
    }

    fn out_of_range(&self, start: usize, end: usize) -> CheckpointError {
        CheckpointError::ReadRange { key: self.name.to_string(), start, end, size: self.len }
    }
}

impl Checkpoint {
    /// Opens a checkpoint: a `.safetensors` file, a `*.safetensors.index.json`, or a folder
    /// holding either. In a folder, `model.safetensors` is preferred (as transformers does),
    /// then `model.safetensors.index.json`, then a lone `*.safetensors.index.json` or
    /// `*.safetensors` file.
    ///
    /// Every file is opened and its header read and checked; no tensor data is read. The files
    /// stay open until the `Checkpoint` is dropped; a file truncated or overwritten by another
    /// process meanwhile makes the reads fail with [`CheckpointError::Modified`].
    ///
    /// ```
    /// use patcher_core::{save_safetensors, Checkpoint, HostTensor};
    /// # let dir = std::env::temp_dir().join(format!("patcher-doc-open-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let file = dir.join("model.safetensors");
    /// let weight = HostTensor::from_f32([2, 2], &[1.0, 2.0, 3.0, 4.0]);
    /// save_safetensors(&file, [("linear.weight".to_string(), weight)], None)?;
    ///
    /// let checkpoint = Checkpoint::open(&dir)?; // the folder, the file or an index
    /// let tensor = checkpoint.get("linear.weight")?;
    /// assert_eq!(tensor.shape(), &[2, 2]);
    /// assert_eq!(tensor.read()?.to_f32_vec()?, vec![1.0, 2.0, 3.0, 4.0]);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        match index::resolve(path.as_ref())? {
            Source::Single(file) => Self::open_single(file),
            Source::Index(index) => Self::open_index(index),
        }
    }

    fn open_single(file: PathBuf) -> Result<Self, CheckpointError> {
        index::check_regular(&file)?;
        let opened = File::open(&file)
            .map_err(|source| CheckpointError::Io { path: file.clone(), source })?;
        let (shard, entries) = Shard::open(file.clone(), opened, 0)?;
        Ok(Self {
            path: file,
            files: vec![shard],
            tensors: entries.into_iter().collect(),
        })
    }

    fn open_index(index_path: PathBuf) -> Result<Self, CheckpointError> {
        let weight_map = index::read_weight_map(&index_path)?;
        let folder = index_path.parent().unwrap_or(Path::new("")).to_path_buf();

        // Shards in sorted order (as transformers does), each with a key that names it in
        // messages; every path is checked before any file is touched.
        let mut shard_names: BTreeMap<&str, &str> = BTreeMap::new();
        for (key, shard) in &weight_map {
            if !index::stays_inside(shard) {
                return Err(CheckpointError::ShardPathEscapes {
                    index: index_path,
                    key: key.clone(),
                    shard: shard.clone(),
                });
            }
            shard_names.entry(shard).or_insert(key);
        }

        let mut files = Vec::with_capacity(shard_names.len());
        let mut tensors: BTreeMap<String, Entry> = BTreeMap::new();
        let mut file_of_name: HashMap<&str, usize> = HashMap::new();
        for (file_index, (&shard, &key)) in shard_names.iter().enumerate() {
            let path = folder.join(shard);
            if path.exists() {
                index::check_regular(&path)?;
            }
            let file = File::open(&path).map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => CheckpointError::MissingShard {
                    index: index_path.clone(),
                    shard: path.clone(),
                    key: key.to_string(),
                },
                _ => CheckpointError::Io { path: path.clone(), source },
            })?;
            let (opened, entries) = Shard::open(path, file, file_index)?;
            for (name, entry) in entries {
                if let Some(previous) = tensors.get(&name) {
                    return Err(CheckpointError::DuplicateKey {
                        key: name,
                        first: files_path(&files, previous.file),
                        second: opened.path.clone(),
                    });
                }
                tensors.insert(name, entry);
            }
            files.push(opened);
            file_of_name.insert(shard, file_index);
        }

        // Every key of the index must be in the shard the index names. Keys a shard holds
        // but the index does not list are kept, as transformers keeps them.
        for (key, shard) in &weight_map {
            let expected = file_of_name[shard.as_str()];
            if tensors.get(key).map(|e| e.file) != Some(expected) {
                return Err(CheckpointError::KeyNotInShard {
                    index: index_path,
                    shard: files_path(&files, expected),
                    key: key.clone(),
                });
            }
        }

        Ok(Self { path: index_path, files, tensors })
    }

    /// The file that was opened: the `.safetensors` file or the index JSON.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The safetensors files, in the order they were opened (sorted for an index).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// The `__metadata__` of the first safetensors file (e.g. `{"format": "pt"}`), if any.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.files.first().and_then(|f| f.metadata.as_ref())
    }

    /// Number of tensors over all files.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the checkpoint has no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Whether a tensor named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Tensor names, sorted by bytes (not the natural order used for grouping experts).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The handle on tensor `name`.
    pub fn get(&self, name: &str) -> Result<TensorRef<'_>, CheckpointError> {
        self.tensors
            .get_key_value(name)
            .map(|(name, entry)| self.handle(name, entry))
            .ok_or_else(|| CheckpointError::TensorNotFound {
                path: self.path.clone(),
                key: name.to_string(),
                count: self.tensors.len(),
            })
    }

    /// Dtype and shape of tensor `name`, if it exists.
    pub fn meta(&self, name: &str) -> Option<TensorMeta> {
        self.tensors
            .get(name)
            .map(|e| TensorMeta::new(e.dtype, e.shape.as_slice()))
    }

    /// `(name, dtype and shape)` of every tensor, sorted by name, without reading any data.
    pub fn metas(&self) -> Vec<(String, TensorMeta)> {
        self.tensors
            .iter()
            .map(|(name, e)| (name.clone(), TensorMeta::new(e.dtype, e.shape.as_slice())))
            .collect()
    }

    /// Handles on every tensor, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = TensorRef<'_>> {
        self.tensors
            .iter()
            .map(|(name, entry)| self.handle(name, entry))
    }

    fn handle<'a>(&'a self, name: &'a str, entry: &'a Entry) -> TensorRef<'a> {
        TensorRef {
            name,
            dtype: entry.dtype,
            shape: &entry.shape,
            shard: &self.files[entry.file],
            start: entry.start,
            // The range was checked to fit a usize when the file was opened.
            len: (entry.end - entry.start) as usize,
        }
    }
}

fn files_path(files: &[Shard], index: usize) -> PathBuf {
    files.get(index).map(|f| f.path.clone()).unwrap_or_default()
}
