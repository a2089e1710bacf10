//! Everything that can go wrong reading or writing a checkpoint, each naming the file (and the
//! tensor where there is one) and saying how to fix it.

use std::io;
use std::path::PathBuf;

use safetensors::SafeTensorError;

/// A checkpoint could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file or folder could not be opened or read.
    #[error("cannot read `{path}`: {source}; check that the path exists and is readable")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// A path that must be a regular file is something else (a FIFO, a socket, a device, a
    /// folder where a file is expected): reading it could block forever or never end.
    #[error(
        "`{path}` is a {kind}, not a regular file; a checkpoint, an index and their shards must \
         be regular files (or links to regular files)"
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead, e.g. `FIFO (named pipe)`.
        kind: String,
    },

    /// A safetensors header names the same tensor twice (the JSON parser would silently keep the
    /// last one).
    #[error(
        "`{file}` names tensor `{key}` twice in its header; the file is corrupt or was edited by \
         hand, re-download or re-export it"
    )]
    DuplicateHeaderKey {
        /// The safetensors file.
        file: PathBuf,
        /// The tensor named twice.
        key: String,
    },

    /// A sharded index's `weight_map` names the same tensor twice.
    #[error(
        "`{index}` maps tensor `{key}` twice in its `weight_map`; each tensor must be listed \
         once, fix or re-download the index"
    )]
    DuplicateIndexKey {
        /// The index file.
        index: PathBuf,
        /// The tensor named twice.
        key: String,
    },

    /// A sharded index is larger than any real index (it lists names, not data).
    #[error(
        "`{index}` is {size} bytes, more than the {max} bytes an index may have; an index only \
         maps tensor names to shard files, so this is not an index"
    )]
    IndexTooLarge {
        /// The index file.
        index: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The largest size read.
        max: u64,
    },

    /// A folder holds no recognisable checkpoint.
    #[error(
        "no checkpoint in folder `{dir}` (found: {found}); it needs `model.safetensors`, \
         `model.safetensors.index.json`, or exactly one `*.safetensors.index.json` or \
         `*.safetensors` file; pass the file itself to choose one"
    )]
    NoCheckpointInFolder {
        /// The folder.
        dir: PathBuf,
        /// The candidate files found there, or `none`.
        found: String,
    },

    /// A safetensors file is truncated or its header is corrupt.
    #[error(
        "`{file}` is not a valid safetensors file (truncated or corrupt header: {source}); \
         re-download or re-export it"
    )]
    Header {
        /// The safetensors file.
        file: PathBuf,
        /// What the safetensors parser found wrong.
        source: SafeTensorError,
    },

    /// A tensor has a dtype burn-patcher does not read.
    #[error(
        "tensor `{key}` in `{file}` has dtype {dtype}, which burn-patcher does not read \
         (supported: F32, F16, BF16, F64, I64, I32, U8, BOOL); dequantize or convert the \
         checkpoint first"
    )]
    UnsupportedDtype {
        /// The safetensors file.
        file: PathBuf,
        /// The tensor's name.
        key: String,
        /// The safetensors dtype name, e.g. `F8_E4M3`.
        dtype: String,
    },

    /// The sharded index is not valid JSON or lacks a `weight_map`.
    #[error(
        "`{index}` is not a valid safetensors index ({source}); it must be a JSON object with a \
         `weight_map` object mapping tensor names to shard file names"
    )]
    IndexJson {
        /// The index file.
        index: PathBuf,
        /// What the JSON parser found wrong.
        source: serde_json::Error,
    },

    /// A shard path in the index points outside the checkpoint folder.
    #[error(
        "shard path `{shard}` for tensor `{key}` in `{index}` leaves the checkpoint folder; \
         shard paths must be relative paths inside the index's folder, without `..` or a root"
    )]
    ShardPathEscapes {
        /// The index file.
        index: PathBuf,
        /// A tensor mapped to that shard.
        key: String,
        /// The shard path as written in the index.
        shard: String,
    },

    /// A shard named in the index does not exist.
    #[error(
        "shard `{shard}` named in `{index}` (e.g. for tensor `{key}`) does not exist; download \
         the missing shard or fix the index"
    )]
    MissingShard {
        /// The index file.
        index: PathBuf,
        /// The missing shard file.
        shard: PathBuf,
        /// A tensor mapped to that shard.
        key: String,
    },

    /// The index maps a tensor to a shard that does not contain it.
    #[error(
        "tensor `{key}` is mapped to `{shard}` by `{index}`, but that shard has no such tensor; \
         the index and the shards do not match, re-download the checkpoint"
    )]
    KeyNotInShard {
        /// The index file.
        index: PathBuf,
        /// The shard the index names.
        shard: PathBuf,
        /// The tensor's name.
        key: String,
    },

    /// The same tensor name is stored in two shards.
    #[error(
        "tensor `{key}` is stored twice, in `{first}` and in `{second}`; shards of one checkpoint \
         must not overlap, remove one copy"
    )]
    DuplicateKey {
        /// The tensor's name.
        key: String,
        /// The first shard holding it.
        first: PathBuf,
        /// The second shard holding it.
        second: PathBuf,
    },

    /// A file of the checkpoint changed after it was opened: truncated, appended to or
    /// overwritten in place by another process while tensors were read from it. (A file replaced
    /// by a rename is not a change: the open file keeps reading the old one, whole.)
    #[error(
        "`{file}` changed while it was being read ({change}); the checkpoint was modified by \
         another process during the load: load again once the writer is done"
    )]
    Modified {
        /// The safetensors file.
        file: PathBuf,
        /// What changed, e.g. `size 612700000 -> 4096 bytes`.
        change: String,
    },

    /// A read of a tensor's bytes asked for a range outside the tensor, or
    /// [`TensorRef::read_into`](crate::TensorRef::read_into) was given a buffer that is not the
    /// tensor's size.
    #[error(
        "cannot read bytes {start}..{end} of tensor `{key}`: it holds {size} bytes; size the \
         buffer with TensorRef::num_bytes (read_into reads the whole tensor, read_range_into a \
         range inside it)"
    )]
    ReadRange {
        /// The tensor's name.
        key: String,
        /// First byte asked for, from the start of the tensor.
        start: usize,
        /// One past the last byte asked for.
        end: usize,
        /// The tensor's size in bytes.
        size: usize,
    },

    /// A tensor was asked for that the checkpoint does not have.
    #[error(
        "no tensor `{key}` in checkpoint `{path}` ({count} tensors); list the names with \
         Checkpoint::keys"
    )]
    TensorNotFound {
        /// The checkpoint that was opened.
        path: PathBuf,
        /// The requested name.
        key: String,
        /// How many tensors the checkpoint has.
        count: usize,
    },

    /// A tensor given to the writer is inconsistent or named twice.
    #[error("cannot save tensor `{key}` to `{path}`: {reason}")]
    InvalidTensor {
        /// The file being written.
        path: PathBuf,
        /// The tensor's name.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// Writing the safetensors file failed.
    #[error(
        "cannot write `{path}`: {source}; check that the folder exists, is writable and has \
         room for the checkpoint"
    )]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: SafeTensorError,
    },

    /// Another save into the same folder holds the folder's lock: two saves at once would
    /// delete each other's files.
    #[error(
        "another save into `{folder}` is in progress; wait until it ends, or save into another \
         folder (saves into one folder are serialised by a lock on the folder)"
    )]
    FolderBusy {
        /// The folder being saved into.
        folder: PathBuf,
    },
}
