//! A load report of arbitrary keys (lines of the input: unexpected before an empty line,
//! missing after): display it (collapsing, caps) and ask for suggestions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patcher_core::LoadReport;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (unexpected, missing) = text.split_once("\n\n").unwrap_or((&text, ""));
    let report = LoadReport {
        unexpected: unexpected.lines().map(str::to_string).collect(),
        missing: missing.lines().map(str::to_string).collect(),
        ..LoadReport::default()
    };
    let shown = report.to_string();
    // Bounded: at most the section caps times the line cap, plus the headers.
    assert!(shown.len() <= 64 * 1024, "{} bytes", shown.len());
    for key in &report.missing {
        if let Some(near) = report.suggestion_for(key) {
            let exists = report.unexpected.contains(&near) || near.contains('{');
            assert!(exists, "suggested `{near}`");
        }
    }
});
