//! A per-process scratch folder for targets that need files (in `/dev/shm` when it exists).

use std::path::PathBuf;

/// The folder, created on first use.
pub fn dir() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("patcher-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}
