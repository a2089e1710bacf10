//! Text as it is generated, one token at a time.

use super::{Tokenizer, TokenizerError};

/// Turns a sequence's tokens, pushed one at a time, into the text they add (transformers'
/// `TextStreamer`).
///
/// A token's text depends on its neighbours (a leading space a decoder strips, a character
/// split over byte tokens), so the whole sequence is decoded at each push and the new part
/// returned; text that ends in an incomplete character (U+FFFD) is held back until the next
/// token completes it.
///
/// ```no_run
/// # use patcher_models::tokenizer::{TextStreamer, Tokenizer};
/// # fn f(tokenizer: &Tokenizer, tokens: &[i64]) -> Result<(), Box<dyn std::error::Error>> {
/// let mut streamer = TextStreamer::new(tokenizer, true);
/// for &token in tokens {
///     print!("{}", streamer.push(token)?);
/// }
/// print!("{}", streamer.finish()?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TextStreamer<'a> {
    tokenizer: &'a Tokenizer,
    skip_special_tokens: bool,
    tokens: Vec<i64>,
    emitted: usize,
}

impl<'a> TextStreamer<'a> {
    /// A streamer decoding with `tokenizer`, special tokens left out when
    /// `skip_special_tokens`.
    pub fn new(tokenizer: &'a Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            tokens: Vec::new(),
            emitted: 0,
        }
    }

    /// Adds `token`; returns the text it completes (often empty).
    pub fn push(&mut self, token: i64) -> Result<String, TokenizerError> {
        self.tokens.push(token);
        let text = self
            .tokenizer
            .decode(&self.tokens, self.skip_special_tokens)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        Ok(self.take_new(&text))
    }

    /// The text not returned yet (what an incomplete character at the end held back).
    pub fn finish(&mut self) -> Result<String, TokenizerError> {
        let text = self
            .tokenizer
            .decode(&self.tokens, self.skip_special_tokens)?;
        Ok(self.take_new(&text))
    }

    /// The tokens pushed so far.
    pub fn tokens(&self) -> &[i64] {
        &self.tokens
    }

    /// `text` past what was returned before. Should a later token change earlier text (rare:
    /// a decoder's merge), the change is not re-emitted; the stream goes on from the new end.
    fn take_new(&mut self, text: &str) -> String {
        let new = match text.get(self.emitted..) {
            Some(new) => new.to_string(),
            None => String::new(),
        };
        self.emitted = self.emitted.max(text.len());
        new
    }
}
