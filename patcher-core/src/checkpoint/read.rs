//! Positioned reads from an open checkpoint file, and the stamp that tells whether the file
//! changed since it was opened.
//!
//! Reads go through the file descriptor opened with the checkpoint (`pread` on Unix,
//! `seek_read` on Windows), never through a memory map: a map of a file that another process
//! truncates kills the reader with `SIGBUS`, where a read returns a short count that becomes a
//! typed error. A file replaced by a rename is not a change: the descriptor still reads the old,
//! whole file (a consistent snapshot).

use std::fs::{File, Metadata};
use std::io;
use std::time::SystemTime;

/// What identifies a file's content at one moment: its length, its modification time (to the
/// nanosecond where the filesystem keeps it) and, on Unix, its device and inode.
///
/// The length catches a truncation or an append, the modification time a same-size overwrite.
/// The device and inode cannot change under an open descriptor on a local filesystem (which is
/// why a file replaced by a rename is not seen); they are compared too, at no cost, in case a
/// filesystem reports another file's identity through the same descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
}

impl Stamp {
    /// The stamp of an open file (`fstat` on its descriptor).
    pub(crate) fn of(file: &File) -> io::Result<Self> {
        Ok(Self::from_metadata(&file.metadata()?))
    }

    fn from_metadata(meta: &Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            dev: meta.dev(),
            #[cfg(unix)]
            ino: meta.ino(),
        }
    }

    /// What differs from `earlier`, in words (`size 100 -> 60 bytes`), or `None` if nothing.
    pub(crate) fn change_since(&self, earlier: &Stamp) -> Option<String> {
        if self == earlier {
            return None;
        }
        let mut changes = Vec::new();
        if self.len != earlier.len {
            changes.push(format!("size {} -> {} bytes", earlier.len, self.len));
        }
        if self.modified != earlier.modified {
            changes.push(format!(
                "mtime {} -> {}",
                seconds(earlier.modified),
                seconds(self.modified)
            ));
        }
        #[cfg(unix)]
        if (self.dev, self.ino) != (earlier.dev, earlier.ino) {
            changes.push(format!(
                "inode {}:{} -> {}:{}",
                earlier.dev, earlier.ino, self.dev, self.ino
            ));
        }
        Some(changes.join(", "))
    }
}

/// A modification time as seconds since the Unix epoch, with nanoseconds.
fn seconds(time: Option<SystemTime>) -> String {
    match time.map(|t| t.duration_since(SystemTime::UNIX_EPOCH)) {
        Some(Ok(d)) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        _ => "unknown".to_string(),
    }
}

/// Fills `dst` from `file` at byte `offset`. A file that ends first gives an error of kind
/// `UnexpectedEof`.
#[cfg(unix)]
pub(crate) fn read_exact_at(file: &File, dst: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, dst, offset)
}

/// Fills `dst` from `file` at byte `offset`. A file that ends first gives an error of kind
/// `UnexpectedEof`.
#[cfg(windows)]
pub(crate) fn read_exact_at(file: &File, mut dst: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !dst.is_empty() {
        match file.seek_read(dst, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                dst = &mut dst[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `dst` from `file` at byte `offset`. A file that ends first gives an error of kind
/// `UnexpectedEof`. Without positioned reads, a seek and a read under a lock (the file
/// position is shared by every thread reading the checkpoint).
#[cfg(not(any(unix, windows)))]
pub(crate) fn read_exact_at(file: &File, dst: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut reader = file;
    reader.seek(SeekFrom::Start(offset))?;
    reader.read_exact(dst)
}
