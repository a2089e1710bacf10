//! One memory-mapped safetensors file and the tensor entries of its header.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::SafeTensors;

use super::dtype::from_safetensors;
use super::error::CheckpointError;
use super::keys::first_duplicate_key;
use crate::tensor::DType;

/// Where one tensor's bytes are: a file of the checkpoint and a byte range of its map.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Index of the file in `Checkpoint::files`.
    pub(crate) file: usize,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    /// Absolute byte range in the map (header included), checked to lie inside it.
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A mapped safetensors file.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) path: PathBuf,
    pub(crate) mmap: Mmap,
    pub(crate) metadata: Option<HashMap<String, String>>,
}

impl Shard {
    /// Maps `path`; `Err(io::Error)` of kind `NotFound` is left to the caller to name. Check
    /// that it is a regular file first ([`super::index::check_regular`]).
    pub(crate) fn map(path: &Path) -> io::Result<Mmap> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only and lives as long as the `Checkpoint`. Like every mmap
        // reader (transformers' `safe_open` included) we rely on the file not being truncated
        // while it is open; `save_safetensors` writes through a temporary file and a rename
        // for exactly that reason, so saving over a loaded checkpoint is safe.
        unsafe { Mmap::map(&file) }
    }

    /// Parses the header of the mapped file and lists its tensors, sorted by name.
    pub(crate) fn open(
        path: PathBuf,
        mmap: Mmap,
        file_index: usize,
    ) -> Result<(Self, Vec<(String, Entry)>), CheckpointError> {
        let header_error = |source| CheckpointError::Header {
            file: path.clone(),
            source,
        };
        // Validates the header JSON, that offsets are contiguous and match dtype * shape, and
        // that the data ends exactly at the end of the file (so truncation is caught here).
        let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(header_error)?;
        // serde keeps the last of two equal keys: a tensor named twice must not load either copy.
        let header = mmap
            .get(8..8usize.saturating_add(header_len))
            .unwrap_or(&[]);
        if let Some(key) = first_duplicate_key(header) {
            return Err(CheckpointError::DuplicateHeaderKey {
                file: path.clone(),
                key,
            });
        }
        let data_start = 8 + header_len;
        let mut entries = Vec::new();
        let mut infos: Vec<_> = metadata.tensors().into_iter().collect();
        infos.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, info) in infos {
            let Some(dtype) = from_safetensors(info.dtype) else {
                return Err(CheckpointError::UnsupportedDtype {
                    file: path.clone(),
                    key,
                    dtype: info.dtype.to_string(),
                });
            };
            let (start, end) = info.data_offsets;
            let (start, end) = (data_start + start, data_start + end);
            // Already guaranteed by `read_metadata`; checked again so that slicing the map
            // later can never panic whatever the parser accepts.
            if start > end || end > mmap.len() {
                return Err(header_error(safetensors::SafeTensorError::InvalidOffset(
                    key,
                )));
            }
            entries.push((
                key,
                Entry {
                    file: file_index,
                    dtype,
                    shape: info.shape.clone(),
                    start,
                    end,
                },
            ));
        }
        let metadata = metadata.metadata().clone();
        Ok((
            Self {
                path,
                mmap,
                metadata,
            },
            entries,
        ))
    }
}

/// Drops the whole pages of `mmap[start..end]` from the resident set (see `Checkpoint::release`).
#[cfg(unix)]
pub(crate) fn release(mmap: &Mmap, start: usize, end: usize) {
    const PAGE: usize = 4096;
    let first = start.div_ceil(PAGE) * PAGE;
    let last = end / PAGE * PAGE;
    if last <= first {
        return;
    }
    // SAFETY: the map is read-only and file-backed: after MADV_DONTNEED the kernel reads the
    // pages back from the file on the next access, so every outstanding borrow still sees the
    // same bytes. Failure only means the pages stay resident, which is harmless.
    let _ = unsafe {
        mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first)
    };
}

/// Drops the whole pages of `mmap[start..end]` from the resident set (see `Checkpoint::release`).
#[cfg(not(unix))]
pub(crate) fn release(_mmap: &Mmap, _start: usize, _end: usize) {}
