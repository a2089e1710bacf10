//! Time and peak resident memory of one call, read from `/proc/self` (Linux).

use std::time::Instant;

use super::Error;

/// The time and memory of one measured call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Seconds of the call.
    pub seconds: f64,
    /// Peak resident memory added by the call, in bytes.
    pub rss_added: u64,
    /// Resident memory added and still held after the call, in bytes.
    pub rss_kept: u64,
}

/// A `/proc/self/status` field, in bytes (0 where unavailable).
pub fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Runs `call`, timing it and measuring the peak resident memory it adds: `VmHWM` after the
/// call minus `VmRSS` before it, the peak being reset first through `/proc/self/clear_refs`.
pub fn measured<T>(call: impl FnOnce() -> Result<T, Error>) -> Result<(T, Usage), Error> {
    // Reset VmHWM to the current RSS (Linux >= 4.0); without it the peak of anything before
    // the call would count, which in a fresh child is little anyway.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_bytes("VmRSS");
    let start = Instant::now();
    let out = call()?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = status_bytes("VmHWM");
    let after = status_bytes("VmRSS");
    let usage = Usage {
        seconds,
        rss_added: peak.saturating_sub(before),
        rss_kept: after.saturating_sub(before),
    };
    Ok((out, usage))
}
