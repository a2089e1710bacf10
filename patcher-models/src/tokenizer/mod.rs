//! Text in and out of a causal LM as transformers' `AutoTokenizer` does it: Hugging Face's
//! `tokenizers` reading the checkpoint's `tokenizer.json`, the special tokens and decoding
//! options of `tokenizer_config.json`, and its chat template (`chat_template.jinja` or the
//! config's `chat_template`) rendered as `apply_chat_template` renders it.
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use patcher_models::auto::AutoModelForCausalLm;
//! use patcher_models::prelude::*;
//! use patcher_models::replacements::Patch;
//! use patcher_models::tokenizer::{ChatMessage, Tokenizer};
//!
//! let dir = "path/to/checkpoint";
//! let device = Default::default();
//! let loaded = AutoModelForCausalLm::<NdArray>::new()
//!     .from_pretrained(dir, Patch::NONE, &device, &Default::default())?;
//! let tokenizer = Tokenizer::from_pretrained(dir)?;
//! let prompt = tokenizer.apply_chat_template(&[ChatMessage::user("Hi!")], true)?;
//! let batch = tokenizer.encode_batch(&[prompt.as_str()], false)?;
//! let (ids, mask) = batch.tensors::<NdArray>(&device);
//! let config = GenerationConfig::for_checkpoint(dir)?.with_max_new_tokens(32);
//! let out = loaded.causal_lm().generate(ids, Some(mask), &config)?;
//! println!("{}", tokenizer.decode(&out.tokens[0], true)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chat;
mod config;
mod python;
mod stream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use tokenizers::models::ModelWrapper;

pub use chat::{ChatMessage, ChatTemplate};
pub use config::TokenizerConfig;
pub use stream::TextStreamer;

use crate::error::{read_text_file, ConfigError};

/// The largest `tokenizer.json` read (1 GiB; the hub's largest are a few tens of MB).
const MAX_TOKENIZER_BYTES: u64 = 1 << 30;

/// Why a tokenizer could not be read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// The folder has no `tokenizer.json`.
    #[error(
        "{0}: no tokenizer.json (burn-patcher reads the fast tokenizer's file; a checkpoint with \
         only a sentencepiece or vocab file can be converted by loading it once with \
         transformers' AutoTokenizer and saving it with save_pretrained)"
    )]
    Missing(PathBuf),
    /// A file could not be read (missing, not a file, too large).
    #[error(transparent)]
    Read(#[from] ConfigError),
    /// `tokenizer_config.json` is not what transformers writes.
    #[error("tokenizer config{}: {reason}", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Config {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// `tokenizer.json` could not be parsed by the `tokenizers` crate.
    #[error("tokenizer{}: {reason}", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Tokenizer {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// The `tokenizers` crate's message.
        reason: String,
    },
    /// Encoding or decoding failed in the `tokenizers` crate.
    #[error("{0}")]
    Codec(String),
    /// A token id below 0 or above `u32::MAX` was given to decode (ids within that range but
    /// past the vocabulary are left out, as transformers leaves them).
    #[error(
        "token id {id} cannot be decoded: token ids are 0 to 4294967295 (this vocabulary has \
         {vocab})"
    )]
    UnknownId {
        /// The id.
        id: i64,
        /// The vocabulary's size, added tokens included.
        vocab: usize,
    },
    /// The tokenizer has no chat template (or none of that name).
    #[error(
        "the tokenizer has no chat template{}; give one as a ChatTemplate, or use the prompt as \
         plain text",
        .0.as_ref().map(|n| format!(" named `{n}`")).unwrap_or_default()
    )]
    NoChatTemplate(Option<String>),
    /// The chat template did not compile or render (its `raise_exception` included).
    #[error("chat template: {0}")]
    Template(#[from] minijinja::Error),
    /// A padded batch needs a padding token, and neither `pad_token` nor `eos_token` is set.
    #[error("padding a batch needs a pad_token or an eos_token in tokenizer_config.json; neither is set")]
    NoPadToken,
}

impl TokenizerError {
    /// The error with `path` as its file.
    fn at(self, path: &Path) -> Self {
        match self {
            Self::Config { reason, .. } => Self::Config { path: Some(path.into()), reason },
            Self::Tokenizer { reason, .. } => Self::Tokenizer { path: Some(path.into()), reason },
            other => other,
        }
    }
}

/// A checkpoint's tokenizer: `tokenizer.json` with `tokenizer_config.json`'s special tokens,
/// decoding options and chat templates.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    config: TokenizerConfig,
}

/// A left-padded batch of token ids, as `tokenizer(texts, padding=True)` returns it with
/// `padding_side="left"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Per sequence, its ids after its padding.
    pub input_ids: Vec<Vec<i64>>,
    /// Per sequence, `0` at padding and `1` at tokens.
    pub attention_mask: Vec<Vec<i64>>,
}

impl PaddedBatch {
    /// The ids and the mask as `[batch, seq]` tensors on `device` (what
    /// [`CausalLm::generate`](crate::common::CausalLm::generate) takes).
    pub fn tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
        let batch = self.input_ids.len();
        let seq = self.input_ids.first().map_or(0, Vec::len);
        let tensor = |rows: &[Vec<i64>]| {
            let flat: Vec<i64> = rows.concat();
            Tensor::from_data(TensorData::new(flat, [batch, seq]), device)
        };
        (tensor(&self.input_ids), tensor(&self.attention_mask))
    }
}

impl Tokenizer {
    /// Reads `dir/tokenizer.json`, and `dir/tokenizer_config.json` and the chat template files
    /// when present ([`TokenizerConfig::from_dir`]). `dir` may also be a weights file inside
    /// the checkpoint folder.
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref();
        let dir = if dir.is_dir() {
            dir
        } else {
            dir.parent().unwrap_or(Path::new("."))
        };
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(TokenizerError::Missing(dir.to_path_buf()));
        }
        let json = read_text_file(&path, MAX_TOKENIZER_BYTES, "tokenizer.json")?;
        let config = TokenizerConfig::from_dir(dir)?;
        Self::from_parts(&json, config).map_err(|e| e.at(&path))
    }

    /// A tokenizer from the text of a `tokenizer.json` and a config.
    pub fn from_parts(
        tokenizer_json: &str,
        config: TokenizerConfig,
    ) -> Result<Self, TokenizerError> {
        let inner = tokenizer_json
            .parse::<tokenizers::Tokenizer>()
            .map_err(|e| TokenizerError::Tokenizer { path: None, reason: e.to_string() })?;
        Ok(Self { inner, config })
    }

    /// What `tokenizer_config.json` said.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// The `tokenizers` crate's tokenizer, for what this type does not wrap (offsets, pairs).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// The id of the special token named `name` (`"eos_token"`), if set and in the vocabulary.
    pub fn special_token_id(&self, name: &str) -> Option<i64> {
        self.token_to_id(self.config.special_token(name)?)
    }

    /// The ids of `text`, with the post-processor's special tokens (a BOS) when
    /// `add_special_tokens` (transformers' `encode(text, add_special_tokens=...)`).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| TokenizerError::Codec(format!("encoding {text:?}: {e}")))?;
        Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
    }

    /// `texts` encoded and left-padded to the longest, with the pad token (`pad_token`, else
    /// `eos_token`, as transformers' `generate` pads), ready for
    /// [`CausalLm::generate`](crate::common::CausalLm::generate).
    pub fn encode_batch(
        &self,
        texts: &[&str],
        add_special_tokens: bool,
    ) -> Result<PaddedBatch, TokenizerError> {
        let rows = texts
            .iter()
            .map(|t| self.encode(t, add_special_tokens))
            .collect::<Result<Vec<_>, _>>()?;
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        let needs_pad = rows.iter().any(|r| r.len() < longest);
        let pad = match self.pad_token_id() {
            Some(pad) => pad,
            None if needs_pad => return Err(TokenizerError::NoPadToken),
            None => 0,
        };
        let (mut input_ids, mut attention_mask) = (Vec::new(), Vec::new());
        for row in rows {
            let padding = longest - row.len();
            attention_mask.push([vec![0; padding], vec![1; row.len()]].concat());
            input_ids.push([vec![pad; padding], row].concat());
        }
        Ok(PaddedBatch { input_ids, attention_mask })
    }

    /// The padding id: `pad_token`, else `eos_token`.
    pub fn pad_token_id(&self) -> Option<i64> {
        self.special_token_id("pad_token")
            .or_else(|| self.special_token_id("eos_token"))
    }

    /// `ids` as text, special tokens left out when `skip_special_tokens`, with
    /// `clean_up_tokenization_spaces` applied where transformers 5 applies it (not on a BPE
    /// unless forced). Ids at or past the vocabulary are left out, as transformers' decode
    /// (the `tokenizers` crate) leaves them: a model's `vocab_size` may be padded past its
    /// tokenizer's (Qwen2's 151,936 for 151,646 tokens), and sampling can pick such an id.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::UnknownId`] for an id below 0 or above `u32::MAX`, and
    /// [`TokenizerError::Codec`] where the tokenizer's decoder fails.
    pub fn decode(&self, ids: &[i64], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        let vocab = self.vocab_size();
        let ids = ids
            .iter()
            .filter_map(|&id| match u32::try_from(id) {
                Ok(id) if (id as usize) < vocab => Some(Ok(id)),
                Ok(_) => None,
                Err(_) => Some(Err(TokenizerError::UnknownId { id, vocab })),
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let text = self
            .inner
            .decode(&ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Codec(format!("decoding: {e}")))?;
        let bpe = matches!(self.inner.get_model(), ModelWrapper::BPE(_));
        if self.config.clean_up_tokenization_spaces && (!bpe || self.config.clean_up_bpe) {
            return Ok(clean_up_tokenization(&text));
        }
        Ok(text)
    }

    /// [`decode`](Self::decode) of each sequence (transformers' `batch_decode`).
    pub fn batch_decode(
        &self,
        sequences: &[Vec<i64>],
        skip_special_tokens: bool,
    ) -> Result<Vec<String>, TokenizerError> {
        sequences
            .iter()
            .map(|ids| self.decode(ids, skip_special_tokens))
            .collect()
    }

    /// The chat template named `name` (`None`: the default one).
    pub fn chat_template(&self, name: Option<&str>) -> Result<ChatTemplate, TokenizerError> {
        let source = self
            .config
            .chat_templates
            .get(name.unwrap_or("default"))
            .ok_or_else(|| TokenizerError::NoChatTemplate(name.map(str::to_string)))?;
        Ok(ChatTemplate::new(source.clone())?)
    }

    /// transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` with the default template. Encode the text with
    /// `add_special_tokens = false`, as transformers does: the template writes the BOS itself.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let template = self.chat_template(None)?;
        Ok(template.render(messages, add_generation_prompt, &self.template_context())?)
    }

    /// What a chat template sees beside the messages: the special tokens by name
    /// (transformers' `special_tokens_map`); add template arguments to it for
    /// [`ChatTemplate::render`].
    pub fn template_context(&self) -> BTreeMap<String, minijinja::Value> {
        (self.config.special_tokens.iter())
            .map(|(k, v)| (k.clone(), minijinja::Value::from(v.as_str())))
            .collect()
    }
}

/// transformers' `clean_up_tokenization`: the spaces WordPiece leaves before punctuation and
/// English contractions removed.
fn clean_up_tokenization(text: &str) -> String {
    const PAIRS: [(&str, &str); 10] = [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ];
    PAIRS
        .iter()
        .fold(text.to_string(), |text, (from, to)| text.replace(from, to))
}
