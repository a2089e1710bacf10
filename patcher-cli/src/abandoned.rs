//! Staging folders of `convert` runs that were killed: a run writes OUT into a hidden folder
//! next to it (`.burn-patcher-<pid>-<random>`) and renames it once complete, so a killed run
//! leaves that folder behind. The next run into the same parent folder removes those whose
//! process is gone.

use std::path::Path;

/// The prefix of a staging folder; the process id of its writer follows, then `-`.
const STAGING_PREFIX: &str = ".burn-patcher-";

/// The prefix of this process' staging folders: `.burn-patcher-<pid>-`.
pub(crate) fn staging_prefix() -> String {
    format!("{STAGING_PREFIX}{}-", std::process::id())
}

/// Removes the staging folders in `parent` whose writer process no longer runs. Only where that
/// can be told (Linux' `/proc`); a folder of a live process, this one's included, is never
/// touched. Best effort: a folder that cannot be removed stays for a later run.
pub(crate) fn remove_abandoned_stagings(parent: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(writer_of) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && pid != std::process::id() && !proc.join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The writer's process id of a staging folder's name.
fn writer_of(name: &str) -> Option<u32> {
    let (pid, random) = name.strip_prefix(STAGING_PREFIX)?.split_once('-')?;
    let ok = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !random.is_empty();
    ok.then(|| pid.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::writer_of;

    #[test]
    fn staging_names_give_their_writer() {
        assert_eq!(writer_of(".burn-patcher-123-Ab9x"), Some(123));
        assert_eq!(writer_of(".burn-patcher-Ab9x"), None);
        assert_eq!(writer_of(".burn-patcher-123-"), None);
        assert_eq!(writer_of("burn-patcher-123-Ab9x"), None);
        assert_eq!(writer_of(".burn-patcher-99999999999-x"), None);
    }
}
