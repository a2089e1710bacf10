//! `tokenizer_config.json` and `chat_template.jinja`: the special tokens, the chat templates and
//! the decoding options transformers reads beside `tokenizer.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::TokenizerError;
use crate::error::read_config_file;

/// What transformers' `AutoTokenizer.from_pretrained` reads from `tokenizer_config.json` (and
/// `chat_template.jinja`) for encoding, decoding and chat: everything else in the file is
/// ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerConfig {
    /// `bos_token`, `eos_token`, `unk_token`, `pad_token`, `sep_token`, `cls_token`,
    /// `mask_token` as set (transformers' `special_tokens_map`, which chat templates see).
    pub special_tokens: BTreeMap<String, String>,
    /// The chat templates by name (`default`, `tool_use`, ...).
    pub chat_templates: BTreeMap<String, String>,
    /// `clean_up_tokenization_spaces` (default `false`, as in transformers 5).
    pub clean_up_tokenization_spaces: bool,
    /// `clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output`: transformers
    /// 5 ignores the clean-up for a BPE tokenizer unless this is set.
    pub clean_up_bpe: bool,
}

/// The special-token names transformers' `special_tokens_map` holds.
const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// The raw file: the fields read, each in the shapes the hub's files have.
#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    chat_template: Option<RawTemplates>,
    #[serde(default)]
    clean_up_tokenization_spaces: Option<bool>,
    #[serde(default)]
    clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: Option<bool>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// `chat_template`: one template, or a list of named ones.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawTemplates {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

impl TokenizerConfig {
    /// Parses the text of a `tokenizer_config.json`.
    pub fn from_json_str(json: &str) -> Result<Self, TokenizerError> {
        let raw: RawConfig = serde_json::from_str(json)
            .map_err(|e| TokenizerError::Config { path: None, reason: e.to_string() })?;
        let mut special_tokens = BTreeMap::new();
        for name in SPECIAL_TOKEN_NAMES {
            // A token is a string or an `AddedToken` object with its `content`.
            let content = match raw.rest.get(name) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(Into::into),
                _ => None,
            };
            if let Some(content) = content {
                special_tokens.insert(name.to_string(), content);
            }
        }
        let chat_templates = match raw.chat_template {
            None => BTreeMap::new(),
            Some(RawTemplates::One(t)) => BTreeMap::from([("default".to_string(), t)]),
            Some(RawTemplates::Named(list)) => {
                list.into_iter().map(|t| (t.name, t.template)).collect()
            }
        };
        Ok(Self {
            special_tokens,
            chat_templates,
            clean_up_tokenization_spaces: raw.clean_up_tokenization_spaces.unwrap_or(false),
            clean_up_bpe: raw
                .clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output
                .unwrap_or(false),
        })
    }

    /// Reads `dir/tokenizer_config.json` (an empty config when absent) and `dir`'s chat
    /// template files, which take priority over the config's templates as in transformers 5:
    /// `chat_template.jinja` is the default template, `chat_templates/NAME.jinja` the named
    /// ones.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let path = dir.join("tokenizer_config.json");
        let mut config = if path.exists() {
            let text = read_config_file(&path)?;
            Self::from_json_str(&text).map_err(|e| e.at(&path))?
        } else {
            Self::default()
        };
        let mut files = BTreeMap::new();
        let default = dir.join("chat_template.jinja");
        if default.exists() {
            files.insert("default".to_string(), read_config_file(&default)?);
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("chat_templates")) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string);
                if let (Some(name), Some("jinja")) =
                    (name, path.extension().and_then(|e| e.to_str()))
                {
                    files.insert(name, read_config_file(&path)?);
                }
            }
        }
        if !files.is_empty() {
            config.chat_templates = files;
        }
        Ok(config)
    }

    /// The special token named `name` (`"eos_token"`), if set.
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.special_tokens.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_as_strings_or_added_tokens_and_named_templates() {
        let config = TokenizerConfig::from_json_str(
            r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                "pad_token": null, "chat_template": [{"name": "default", "template": "d"},
                {"name": "tool_use", "template": "t"}], "clean_up_tokenization_spaces": true}"#,
        )
        .unwrap();
        assert_eq!(config.special_token("bos_token"), Some("<s>"));
        assert_eq!(config.special_token("eos_token"), Some("</s>"));
        assert_eq!(config.special_token("pad_token"), None);
        assert_eq!(config.chat_templates["tool_use"], "t");
        assert!(config.clean_up_tokenization_spaces && !config.clean_up_bpe);
    }

    #[test]
    fn a_malformed_config_is_an_error() {
        let err = TokenizerConfig::from_json_str(r#"{"chat_template": 3}"#).unwrap_err();
        assert!(matches!(err, TokenizerError::Config { .. }), "{err}");
    }
}
