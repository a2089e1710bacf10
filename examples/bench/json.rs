//! The one-line JSON summaries the benchmarks print for scripts (`SUMMARY {...}`).

/// A JSON object written field by field.
#[derive(Default)]
pub struct Object(Vec<String>);

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// A field whose value is already JSON (a number, `true`, an object).
    pub fn raw(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.0.push(format!("{}:{value}", string(key)));
        self
    }

    /// A number field with `decimals` digits after the point.
    pub fn number(self, key: &str, value: f64, decimals: usize) -> Self {
        self.raw(key, format!("{value:.decimals$}"))
    }

    /// A string field.
    pub fn text(self, key: &str, value: &str) -> Self {
        self.raw(key, string(value))
    }

    /// A field holding another object.
    pub fn object(self, key: &str, value: Object) -> Self {
        self.raw(key, value)
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{{}}}", self.0.join(","))
    }
}

/// `s` as a JSON string.
pub fn string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
