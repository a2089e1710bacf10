//! Reading `config.json`: bounded, with the path in every error.

pub use patcher_core::ConfigError;

/// The largest `config.json` read (16 MiB; real ones are a few KB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a file to a string, with the path in the error. The file must be a regular file (a
/// FIFO would block) of at most [`MAX_CONFIG_BYTES`].
pub(crate) fn read_config_file(path: &std::path::Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let io = |source| ConfigError::Io { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ConfigError::NotAConfig {
            path: path.to_path_buf(),
            reason: "not a regular file (a folder, FIFO or device); config.json must be a file"
                .into(),
        });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::NotAConfig {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes, more than the {MAX_CONFIG_BYTES} bytes a config may have",
                meta.len()
            ),
        });
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_BYTES).read_to_string(&mut text))
        .map_err(io)?;
    Ok(text)
}

/// `config.json` of the checkpoint at `path` (a folder, or a weights file inside one).
pub(crate) fn config_path(path: &std::path::Path) -> std::path::PathBuf {
    if path.is_dir() {
        path.join("config.json")
    } else {
        path.parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join("config.json")
    }
}
