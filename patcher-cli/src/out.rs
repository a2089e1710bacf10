//! OUT, the folder `convert` writes: resolved and checked before any work is done, and what a
//! failed write says about it (where, how much space).

use std::path::{Path, PathBuf};

use burn::module::Module;
use patcher_burn::{model_params_with, SaveError, TorchLayouts};
use patcher_core::{CheckpointError, DType};

use crate::error::CliError;
use crate::inspect::bytes;
use crate::prepare::parent_folder;

/// The folder to write for OUT, checked: OUT must be absent or an empty folder. A symbolic
/// link is followed (to the end of a chain) and its target checked the same way, so a link to a
/// non-empty folder is refused here, before any work, as that folder itself is; a link to an
/// empty folder gets the checkpoint written into that folder (the link is left as it is and
/// names the result); a link to nothing is refused.
pub(crate) fn resolve(out: &Path) -> Result<PathBuf, CliError> {
    let refuse = |message: String| CliError::Output { path: out.to_path_buf(), message };
    let is_link = std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink());
    let folder = if is_link {
        std::fs::canonicalize(out).map_err(|error| {
            refuse(format!(
                "is a symbolic link to a path that cannot be resolved ({error}); give a new \
                 folder, or make the link name an existing empty folder"
            ))
        })?
    } else {
        out.to_path_buf()
    };
    let via = if is_link {
        format!(" (the symbolic link's target {})", folder.display())
    } else {
        String::new()
    };
    if folder.exists() && !folder.is_dir() {
        return Err(refuse(format!(
            "is a file{via}; OUT is the folder to write the converted checkpoint to"
        )));
    }
    if folder.is_dir() {
        let empty = std::fs::read_dir(&folder)
            .map_err(CliError::io("reading", &folder))?
            .next()
            .is_none();
        if !empty {
            return Err(refuse(format!(
                "is not empty{via}; give a new folder (or remove this one) so nothing is mixed \
                 with or overwritten by the converted checkpoint"
            )));
        }
    }
    Ok(folder)
}

/// The bytes a save of `model` writes in `dtype` (tensor data; the headers add a few KB).
pub(crate) fn bytes_to_write<B: burn::prelude::Backend, M: Module<B>>(
    model: &M,
    layouts: &TorchLayouts,
    dtype: DType,
) -> u64 {
    model_params_with(model, layouts)
        .iter()
        .map(|p| p.expected(dtype).1.num_bytes() as u64)
        .sum()
}

/// A save into `out` that failed with `error`: a checkpoint error there is about the files
/// being written (the input was read before), so it is an output error (exit status 3) that
/// says where and how much space the output needs against how much is free.
pub(crate) fn write_failed(out: &Path, needed: u64, error: SaveError) -> CliError {
    match error {
        SaveError::Write(source) => write_error(out, needed, source),
        error => CliError::Save(error),
    }
}

/// Writing `needed` bytes into `out` failed with `source`: where, and how much space is free
/// against how much the output takes.
pub(crate) fn write_error(out: &Path, needed: u64, source: CheckpointError) -> CliError {
    let folder = parent_folder(out);
    let free = match free_bytes(&folder) {
        Some(free) => format!("{} free", bytes(free)),
        None => "an unknown amount of space free".to_string(),
    };
    CliError::Write {
        out: out.to_path_buf(),
        source: Box::new(source),
        space: format!(
            "{} (the file system of {}) has {free}; the converted checkpoint takes about {}",
            out.display(),
            folder.display(),
            bytes(needed)
        ),
    }
}

/// Space available to this user on the file system holding `folder`.
#[cfg(unix)]
fn free_bytes(folder: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(folder.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a NUL-terminated string and `stat` a writable statvfs that the call
    // fills in; both outlive the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let status = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (status == 0).then(|| (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Unknown where there is no `statvfs`.
#[cfg(not(unix))]
fn free_bytes(_folder: &Path) -> Option<u64> {
    None
}
