//! The benchmarks' tables: aligned columns for a terminal, or Markdown for the docs.

/// A table: a title per column, then rows of cells (or a label and a note in place of cells).
pub struct Table {
    columns: Vec<(String, usize)>,
    rows: Vec<Row>,
}

enum Row {
    Cells(Vec<String>),
    Note(String, String),
}

impl Table {
    /// A table with these `(title, width)` columns; the width matters for [`Table::aligned`]
    /// only (the first column is left-aligned, the others right-aligned).
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = (S, usize)>) -> Self {
        Self {
            columns: columns.into_iter().map(|(t, w)| (t.into(), w)).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of cells, one per column.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Row::Cells(cells));
    }

    /// Adds a row with its first cell and a note instead of figures (a skipped contender).
    pub fn note(&mut self, label: impl Into<String>, note: impl Into<String>) {
        self.rows.push(Row::Note(label.into(), note.into()));
    }

    /// Columns padded to their widths, a rule under the titles.
    pub fn aligned(&self) -> String {
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, (cell, (_, width))) in cells.zip(&self.columns).enumerate() {
                if i == 0 {
                    out.push_str(&format!("{cell:<width$}"));
                } else {
                    out.push_str(&format!(" {cell:>width$}"));
                }
            }
            out
        };
        let rule = self.columns.iter().map(|(_, w)| w + 1).sum::<usize>();
        let mut out = line(&mut self.columns.iter().map(|(t, _)| t.as_str()));
        out.push('\n');
        out.push_str(&"-".repeat(rule));
        out.push('\n');
        for row in &self.rows {
            match row {
                Row::Cells(cells) => out.push_str(&line(&mut cells.iter().map(String::as_str))),
                Row::Note(label, note) => {
                    let width = self.columns.first().map_or(0, |(_, w)| *w);
                    out.push_str(&format!("{label:<width$} {note}"));
                }
            }
            out.push('\n');
        }
        out
    }

    /// A Markdown table.
    pub fn markdown(&self) -> String {
        let line = |cells: Vec<&str>| format!("| {} |\n", cells.join(" | "));
        let mut out = line(self.columns.iter().map(|(t, _)| t.as_str()).collect());
        out.push_str(&format!("|{}\n", "---|".repeat(self.columns.len())));
        for row in &self.rows {
            out.push_str(&match row {
                Row::Cells(cells) => line(cells.iter().map(String::as_str).collect()),
                Row::Note(label, note) => line(vec![label, note]),
            });
        }
        out
    }
}
