//! Reading `config.json`: bounded, with the path in every error.

pub use patcher_core::ConfigError;

/// The largest `config.json` read (16 MiB; real ones are a few KB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a file to a string, with the path in the error. The file must be a regular file (a
/// FIFO would block) of at most [`MAX_CONFIG_BYTES`].
pub(crate) fn read_config_file(path: &std::path::Path) -> Result<String, ConfigError> {
    read_text_file(path, MAX_CONFIG_BYTES, "config.json")
}

/// Reads a regular file of at most `max` bytes to a string, with the path in the error; `what`
/// names the file in the message (`"tokenizer.json"`).
pub(crate) fn read_text_file(
    path: &std::path::Path,
    max: u64,
    what: &str,
) -> Result<String, ConfigError> {
    use std::io::Read;
    let io = |source| ConfigError::Io { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ConfigError::NotAConfig {
            path: path.to_path_buf(),
            reason: format!("not a regular file (a folder, FIFO or device); {what} must be a file"),
        });
    }
    if meta.len() > max {
        return Err(ConfigError::NotAConfig {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes, more than the {max} bytes a {what} may have",
                meta.len()
            ),
        });
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(max).read_to_string(&mut text))
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
