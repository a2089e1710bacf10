//! Bounds on what a report prints: at most [`MAX_SECTION_LINES`] lines per section (then a
//! count of the rest), each at most [`MAX_LINE_BYTES`] (a long key keeps its head and tail).
//! The report's fields keep every entry in full; only the text is capped, so a checkpoint with
//! thousands of long keys still gives a message of a few KB.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Lines shown per section of a report; the rest are counted.
pub const MAX_SECTION_LINES: usize = 32;

/// Longest line shown; longer ones keep their head and tail around `…(N bytes)…`.
pub const MAX_LINE_BYTES: usize = 400;

/// `text` if it is at most `max` bytes, else its head and tail around `…(N bytes)…`, where `N`
/// is the number of bytes left out. Cuts on character boundaries.
///
/// ```
/// use patcher_core::plan::elide;
/// assert_eq!(elide("short", 10), "short");
/// let long = format!("model.{}.weight", "x".repeat(1000));
/// let shown = elide(&long, 60);
/// assert!(shown.starts_with("model.xx") && shown.ends_with("xx.weight"));
/// assert!(shown.contains("bytes)") && shown.len() <= 60);
/// ```
pub fn elide(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    // Room for the marker, whose number has at most 20 digits.
    let keep = max.saturating_sub(32) / 2;
    let mut head = keep;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - keep;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    Cow::Owned(format!(
        "{}…({} bytes)…{}",
        &text[..head],
        tail - head,
        &text[tail..]
    ))
}

/// Writes `title:` and one indented line per item (at most [`MAX_SECTION_LINES`], each elided
/// to [`MAX_LINE_BYTES`]), then `... and N more` if some were left out. Nothing if `items` is
/// empty.
pub(crate) fn write_section<T>(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    items: &[T],
    mut line: impl FnMut(&mut String, &T) -> fmt::Result,
) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(f, "{title}:")?;
    let mut text = String::new();
    for item in items.iter().take(MAX_SECTION_LINES) {
        text.clear();
        line(&mut text, item)?;
        writeln!(f, "  {}", elide(&text, MAX_LINE_BYTES))?;
    }
    if items.len() > MAX_SECTION_LINES {
        let mut more = String::new();
        write!(
            more,
            "  ... and {} more (the report's fields list every entry)",
            items.len() - MAX_SECTION_LINES
        )?;
        writeln!(f, "{more}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elides_on_char_boundaries() {
        let text = "é".repeat(1000);
        let shown = elide(&text, 100);
        assert!(shown.len() <= 100, "{}", shown.len());
        assert!(shown.contains("bytes)"));
        assert_eq!(elide("abc", 3), "abc");
        assert!(elide("abcdef", 0).contains("(6 bytes)"));
    }
}
