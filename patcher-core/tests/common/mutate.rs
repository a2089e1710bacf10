//! Seeded mutation of safetensors files and JSON texts, and a counting allocator, shared by the
//! mutation tests (`patcher-core/tests/mutation.rs`, `patcher-models/tests/mutation.rs`).
//!
//! `PATCHER_MUTATION_ITERS` sets the number of mutations (default: a CI-sized run of a few
//! seconds) and `PATCHER_MUTATION_SEED` the seed, so a long run is
//! `PATCHER_MUTATION_ITERS=1000000 cargo test --test mutation`.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A global allocator that counts the bytes live and the peak since [`CountingAlloc::reset`].
pub struct CountingAlloc {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl CountingAlloc {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self { live: AtomicUsize::new(0), peak: AtomicUsize::new(0) }
    }

    /// Starts a new measurement: the peak is the live bytes now. Returns them.
    pub fn reset(&self) -> usize {
        let live = self.live.load(Ordering::SeqCst);
        self.peak.store(live, Ordering::SeqCst);
        live
    }

    /// Counts `bytes` more live if `ptr` is an allocation; returns `ptr`.
    fn grew(&self, ptr: *mut u8, bytes: usize) -> *mut u8 {
        if !ptr.is_null() {
            let live = self.live.fetch_add(bytes, Ordering::SeqCst) + bytes;
            self.peak.fetch_max(live, Ordering::SeqCst);
        }
        ptr
    }

    /// Runs `f`, failing with `context()` if it panics or if the live bytes rise more than
    /// `bound` above where they were.
    pub fn checked<T>(
        &self,
        bound: usize,
        context: impl Fn() -> String,
        f: impl FnOnce() -> T,
    ) -> T {
        let base = self.reset();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| panic!("{}: panicked", context()));
        let peak = self.peak().saturating_sub(base);
        assert!(peak <= bound, "{}: allocated {peak} bytes", context());
        out
    }

    /// Highest live bytes since the last reset.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        self.grew(unsafe { System.alloc(layout) }, layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        self.grew(unsafe { System.alloc_zeroed(layout) }, layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        self.live.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `alloc`/`dealloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if new_size >= layout.size() {
            return self.grew(new, new_size - layout.size());
        }
        if !new.is_null() {
            self.live
                .fetch_sub(layout.size() - new_size, Ordering::SeqCst);
        }
        new
    }
}

/// SplitMix64: small, seeded, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Iterations and seed from the environment (`PATCHER_MUTATION_ITERS`,
/// `PATCHER_MUTATION_SEED`), else `default_iters` and a fixed seed.
pub fn settings(default_iters: usize) -> (usize, u64) {
    let iters = std::env::var("PATCHER_MUTATION_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_iters);
    let seed = std::env::var("PATCHER_MUTATION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0012);
    (iters, seed)
}

/// Numbers that break size arithmetic.
pub const NASTY_NUMBERS: [&str; 16] = [
    "0",
    "1",
    "-1",
    "2",
    "255",
    "65536",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "-0.0",
    "1.5",
    "NaN",
    "99999999999999999999999999",
];

/// Bytes that change JSON's structure.
const JSON_BYTES: &[u8] = b"{}[]\",:0123456789-e.\\ nul";

/// A mutated copy of a safetensors file and what was done (to name a failing case).
pub fn mutate_safetensors(original: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let mut bytes = original.to_vec();
    let header_len = original
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
        .unwrap_or(0)
        .min(original.len().saturating_sub(8));
    let header = 8..8 + header_len;
    let rounds = 1 + rng.below(3);
    let mut what = Vec::new();
    for _ in 0..rounds {
        let len = bytes.len().max(1);
        match rng.below(10) {
            0 => {
                let at = header.start + rng.below(header_len.max(1));
                if at < bytes.len() {
                    bytes[at] = *rng.pick(JSON_BYTES);
                    what.push(format!("header byte {at}"));
                }
            }
            1 => {
                let at = rng.below(len);
                if at < bytes.len() {
                    bytes[at] ^= 1 << rng.below(8);
                    what.push(format!("bit flip at {at}"));
                }
            }
            2 => {
                let at = rng.below(len);
                bytes.truncate(at);
                what.push(format!("truncated to {at}"));
            }
            3 => {
                let value: u64 = match rng.below(4) {
                    0 => rng.next_u64(),
                    1 => (header_len as u64)
                        .wrapping_add(rng.below(16) as u64)
                        .wrapping_sub(8),
                    2 => 100_000_001,
                    _ => u64::MAX,
                };
                if bytes.len() >= 8 {
                    bytes[..8].copy_from_slice(&value.to_le_bytes());
                    what.push(format!("header length {value}"));
                }
            }
            4 | 5 => {
                // Replace a number in the header with a nasty one (length prefix fixed).
                let text = String::from_utf8_lossy(
                    &bytes[header.start.min(bytes.len())..header.end.min(bytes.len())],
                )
                .into_owned();
                let digits: Vec<usize> = text
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if digits.is_empty() {
                    continue;
                }
                let at = *rng.pick(&digits);
                let end = text[at..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(text.len(), |e| at + e);
                let nasty = *rng.pick(&NASTY_NUMBERS);
                let new_header = format!("{}{}{}", &text[..at], nasty, &text[end..]);
                what.push(format!("number at {at} -> {nasty}"));
                bytes = rebuild(&new_header, &bytes[header.end.min(bytes.len())..]);
            }
            6 => {
                // Duplicate a tensor entry (a key named twice).
                let text = String::from_utf8_lossy(
                    &bytes[header.start.min(bytes.len())..header.end.min(bytes.len())],
                )
                .into_owned();
                if let (Some(open), Some(close)) = (text.find("\":{"), text.find('}')) {
                    let start = text[..open].rfind('"').unwrap_or(0);
                    if start < close && text.len() > 1 {
                        let entry = &text[start..=close];
                        let new_header = format!("{{{entry},{}", &text[1..]);
                        what.push("duplicated entry".to_string());
                        bytes = rebuild(&new_header, &bytes[header.end.min(bytes.len())..]);
                    }
                }
            }
            7 => {
                let count = 1 + rng.below(64);
                let at = rng.below(len);
                let fill = rng.next_u64() as u8;
                let at = at.min(bytes.len());
                bytes.splice(at..at, std::iter::repeat_n(fill, count));
                what.push(format!("inserted {count} bytes at {at}"));
            }
            8 => {
                // Body bytes: any values, e.g. NaN patterns.
                let start = header.end.min(bytes.len());
                if start < bytes.len() {
                    let at = start + rng.below(bytes.len() - start);
                    let end = (at + 4).min(bytes.len());
                    let nan = [0x00, 0x00, 0xc0, 0x7f];
                    bytes[at..end].copy_from_slice(&nan[..end - at]);
                    what.push(format!("body NaN at {at}"));
                }
            }
            _ => {
                let at = rng.below(len).min(bytes.len());
                let count = rng.below(64).min(bytes.len() - at);
                bytes.drain(at..at + count);
                what.push(format!("removed {count} bytes at {at}"));
            }
        }
    }
    (bytes, what.join(", "))
}

/// A safetensors file from a header text and data, with the length prefix fixed.
fn rebuild(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// A mutated JSON text (e.g. `config.json` or an index): a value replaced by a nasty number, a
/// structural byte changed, a key duplicated, or the text cut.
pub fn mutate_json(original: &str, rng: &mut Rng) -> (String, String) {
    let mut text = original.to_string();
    match rng.below(6) {
        0..=2 => {
            // Replace one number with a nasty one.
            let digits: Vec<usize> = text
                .char_indices()
                .filter(|(i, c)| {
                    c.is_ascii_digit() && (*i == 0 || !text.as_bytes()[i - 1].is_ascii_digit())
                })
                .map(|(i, _)| i)
                .collect();
            if let Some(&at) = (!digits.is_empty()).then(|| rng.pick(&digits)) {
                let end = text[at..]
                    .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-'))
                    .map_or(text.len(), |e| at + e);
                let nasty = *rng.pick(&NASTY_NUMBERS);
                let what = format!("number `{}` -> {nasty}", &text[at..end]);
                text.replace_range(at..end, nasty);
                return (text, what);
            }
            (text, "unchanged".into())
        }
        3 => {
            let at = rng
                .below(text.len().max(1))
                .min(text.len().saturating_sub(1));
            if text.is_char_boundary(at) && text.is_char_boundary(at + 1) {
                let byte = *rng.pick(JSON_BYTES) as char;
                text.replace_range(at..at + 1, &byte.to_string());
            }
            (text, format!("byte {at}"))
        }
        4 => {
            let mut at = rng.below(text.len().max(1));
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.truncate(at);
            (text, format!("cut at {at}"))
        }
        _ => {
            // Duplicate the first member of the object.
            if let Some(comma) = text.find(",\n") {
                let member = text[1..comma].to_string();
                text.insert_str(1, &format!("{member},"));
            }
            (text, "duplicated member".into())
        }
    }
}
