//! A renaming's source pattern as the replacement text of its reverse.
//!
//! Saving undoes a renaming by writing back the text its source pattern matched. That text is
//! known only where the pattern matches one text: literals, zero-width assertions (`^`, `$`,
//! `\b`, `\B`), and the first `(...)` group, which the reverse captures again and writes back as
//! `\1`. A character class, a repetition, an alternation or a second group outside the first
//! group could have matched several texts, so the reverse could not say which to write.

use regex_syntax::ast::{self, Ast, GroupKind};

/// Stands for a `\1` in the pattern while it is parsed (the parser rejects backreferences).
const BACKREFERENCE: char = '\u{E000}';

/// `pattern` (a renaming's source) as the replacement text that undoes the renaming, and the
/// source of its first `(...)` group, which the reverse matches in its place.
///
/// An unescaped `.` is written back as a dot (key patterns use it for the dot between names,
/// as transformers' do; a save checks that its keys load back). Errors with the reason when a
/// part of the pattern matches more than one text outside the first group.
///
/// ```
/// use patcher_core::pattern::reverse_replacement;
/// assert_eq!(
///     reverse_replacement(r"\b(q_proj|v_proj)\.weight$").unwrap(),
///     (r"\1.weight".to_string(), Some("(q_proj|v_proj)".to_string())),
/// );
/// assert!(reverse_replacement(r"layers\.\d+\.norm").is_err());
/// ```
pub fn reverse_replacement(pattern: &str) -> Result<(String, Option<String>), String> {
    let body = pattern
        .replace("*.", r".*\.")
        .replace(r"\1", &BACKREFERENCE.to_string());
    let ast = ast::parse::Parser::new()
        .parse(&body)
        .map_err(|e| format!("it is not a valid regex ({})", e.kind()))?;
    let mut text = Replacement {
        body: &body,
        out: String::new(),
        group: None,
        backreference: false,
    };
    text.walk(&ast)?;
    Ok((text.out, text.group))
}

struct Replacement<'p> {
    body: &'p str,
    out: String,
    /// The first group's source, once met.
    group: Option<String>,
    /// Whether the pattern had a `\1` of its own (the first group then is its paired target's).
    backreference: bool,
}

impl Replacement<'_> {
    fn walk(&mut self, ast: &Ast) -> Result<(), String> {
        match ast {
            Ast::Empty(_) | Ast::Assertion(_) => Ok(()),
            Ast::Literal(l) if l.c == BACKREFERENCE => {
                self.backreference = true;
                self.out.push_str(r"\1");
                Ok(())
            }
            Ast::Literal(l) => {
                self.out.push(l.c);
                Ok(())
            }
            Ast::Dot(_) => {
                self.out.push('.');
                Ok(())
            }
            Ast::Concat(c) => c.asts.iter().try_for_each(|a| self.walk(a)),
            Ast::Group(g) => match &g.kind {
                GroupKind::NonCapturing(flags) if flags.items.is_empty() => self.walk(&g.ast),
                GroupKind::NonCapturing(_) => Err(self.many(&g.span, "flags")),
                _ if self.group.is_some() || self.backreference => {
                    Err(self.many(&g.span, "a second group"))
                }
                _ => {
                    let source = &self.body[g.span.start.offset..g.span.end.offset];
                    self.group = Some(source.replace(BACKREFERENCE, r"\1"));
                    self.out.push_str(r"\1");
                    Ok(())
                }
            },
            Ast::Flags(f) => Err(self.many(&f.span, "flags")),
            Ast::ClassUnicode(c) => Err(self.many(&c.span, "a character class")),
            Ast::ClassPerl(c) => Err(self.many(&c.span, "a character class")),
            Ast::ClassBracketed(c) => Err(self.many(&c.span, "a character class")),
            Ast::Repetition(r) => Err(self.many(&r.span, "a repetition")),
            Ast::Alternation(a) => Err(self.many(&a.span, "an alternation")),
        }
    }

    /// Why the part at `span` cannot be written back.
    fn many(&self, span: &ast::Span, what: &str) -> String {
        let part = self.body[span.start.offset..span.end.offset].replace(BACKREFERENCE, r"\1");
        format!(
            "{what} (`{part}`) outside the first `(...)` group, which matches more than one \
             text, so the reverse cannot tell which to write back"
        )
    }
}
