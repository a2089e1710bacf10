//! One open safetensors file: its header's tensor entries, and positioned reads of their bytes
//! that fail with a typed error when the file changes under them.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;

use safetensors::tensor::Metadata;
use safetensors::SafeTensorError;

use super::dtype::from_safetensors;
use super::error::CheckpointError;
use super::keys::first_duplicate_key;
use super::read::{read_exact_at, Stamp};
use crate::tensor::DType;

/// Where one tensor's bytes are: a file of the checkpoint and a byte range of it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Index of the file in `Checkpoint::files`.
    pub(crate) file: usize,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    /// Absolute byte range in the file (header included), checked to lie inside it.
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// An open safetensors file.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) path: PathBuf,
    file: File,
    /// The file as it was when its header was read; every read checks it still is.
    stamp: Stamp,
    pub(crate) metadata: Option<HashMap<String, String>>,
}

/// The largest header read, as the safetensors crate's own limit (100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

impl Shard {
    /// Reads and checks the header of `file` (opened from `path`, checked to be a regular file
    /// first: [`super::index::check_regular`]) and lists its tensors, sorted by name.
    pub(crate) fn open(
        path: PathBuf,
        file: File,
        file_index: usize,
    ) -> Result<(Self, Vec<(String, Entry)>), CheckpointError> {
        let stamp = Stamp::of(&file)
            .map_err(|source| CheckpointError::Io { path: path.clone(), source })?;
        let mut shard = Self { path, file, stamp, metadata: None };
        let (header, data_start) = shard.read_header()?;
        let header_error = |source| CheckpointError::Header { file: shard.path.clone(), source };
        let text = std::str::from_utf8(&header)
            .map_err(|e| header_error(SafeTensorError::InvalidHeader(e)))?;
        // Validates that offsets are contiguous from 0 and match dtype * shape.
        let metadata: Metadata = serde_json::from_str(text)
            .map_err(|e| header_error(SafeTensorError::InvalidHeaderDeserialization(e)))?;
        // serde keeps the last of two equal keys: a tensor named twice must not load either copy.
        if let Some(key) = first_duplicate_key(&header) {
            return Err(CheckpointError::DuplicateHeaderKey { file: shard.path.clone(), key });
        }
        // The data must end exactly at the end of the file (so truncation is caught here).
        let data_end = metadata
            .tensors()
            .values()
            .map(|info| info.data_offsets.1 as u64)
            .max()
            .unwrap_or(0);
        if data_start.checked_add(data_end) != Some(stamp.len) {
            return Err(header_error(SafeTensorError::MetadataIncompleteBuffer));
        }
        let mut entries = Vec::new();
        let mut infos: Vec<_> = metadata.tensors().into_iter().collect();
        infos.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, info) in infos {
            let Some(dtype) = from_safetensors(info.dtype) else {
                return Err(CheckpointError::UnsupportedDtype {
                    file: shard.path.clone(),
                    key,
                    dtype: info.dtype.to_string(),
                });
            };
            let (start, end) = info.data_offsets;
            let (start, end) = (data_start + start as u64, data_start + end as u64);
            // Already guaranteed by the validation above; checked again so that a read can
            // never be asked for bytes outside the file whatever the parser accepts.
            if start > end || end > stamp.len || usize::try_from(end - start).is_err() {
                return Err(header_error(SafeTensorError::InvalidOffset(key)));
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
        shard.metadata = metadata.metadata().clone();
        Ok((shard, entries))
    }

    /// The header's JSON bytes and the offset where the data starts.
    fn read_header(&self) -> Result<(Vec<u8>, u64), CheckpointError> {
        let header_error = |source| CheckpointError::Header { file: self.path.clone(), source };
        if self.stamp.len < 8 {
            return Err(header_error(SafeTensorError::HeaderTooSmall));
        }
        let mut len = [0u8; 8];
        self.read_at(0, &mut len)?;
        let len = u64::from_le_bytes(len);
        if len > MAX_HEADER_BYTES {
            return Err(header_error(SafeTensorError::HeaderTooLarge));
        }
        if 8 + len > self.stamp.len {
            return Err(header_error(SafeTensorError::InvalidHeaderLength));
        }
        // `len` is at most MAX_HEADER_BYTES, which fits a usize.
        let mut header = vec![0u8; len as usize];
        self.read_at(8, &mut header)?;
        Ok((header, 8 + len))
    }

    /// Fills `dst` with the file's bytes from `offset`, then checks (`fstat` on the same
    /// descriptor) that the file is still the one that was opened: a truncation, an append or
    /// an overwrite in place since is [`CheckpointError::Modified`], as is a read that ends early.
    pub(crate) fn read_at(&self, offset: u64, dst: &mut [u8]) -> Result<(), CheckpointError> {
        let read = read_exact_at(&self.file, dst, offset);
        let io = |source| CheckpointError::Io { path: self.path.clone(), source };
        // Checked after the read: a change during the read shows in the stamp, and a read cut
        // short by a truncation is reported as the truncation it is.
        let now = Stamp::of(&self.file).map_err(io)?;
        if let Some(change) = now.change_since(&self.stamp) {
            return Err(self.modified(change));
        }
        match read {
            // The header said the file holds these bytes and its length was checked when it
            // was opened: it shrank and grew back since.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.modified(format!(
                "it ends before byte {} although its size is unchanged",
                offset + dst.len() as u64
            ))),
            other => other.map_err(io),
        }
    }

    fn modified(&self, change: String) -> CheckpointError {
        CheckpointError::Modified { file: self.path.clone(), change }
    }
}
