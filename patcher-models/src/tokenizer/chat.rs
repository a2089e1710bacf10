//! A checkpoint's chat template rendered as transformers' `apply_chat_template` renders it:
//! jinja with `trim_blocks`, `lstrip_blocks` and loop controls, Python's string methods
//! (`.strip()`, `.startswith()`), `raise_exception`, `strftime_now`, transformers' `tojson`, and
//! the special tokens (`bos_token`, ...) in the context.

use std::collections::BTreeMap;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

use super::python;

/// One message of a conversation (`{"role": "user", "content": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template.
///
/// ```
/// use patcher_models::tokenizer::{ChatMessage, ChatTemplate};
///
/// let template = ChatTemplate::new(
///     "{% for m in messages %}<|{{ m.role }}|>{{ m.content.strip() }}\n{% endfor %}\
///      {% if add_generation_prompt %}<|assistant|>{% endif %}",
/// )?;
/// let text = template.render(&[ChatMessage::user("  Hi! ")], true, &Default::default())?;
/// assert_eq!(text, "<|user|>Hi!\n<|assistant|>");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

/// The template's name in its environment.
const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source` in transformers' environment; a syntax error is an error here, not at
    /// the first render.
    pub fn new(source: impl Into<String>) -> Result<Self, Error> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out, _state, value| {
            out.write_str(&python::py_str(value)).map_err(Error::from)
        });
        env.add_filter("tojson", |value: Value, kwargs: Kwargs| {
            python::tojson(&value, kwargs)
        });
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_function("strftime_now", |format: String| {
            python::strftime_now(&format)
        });
        env.add_template_owned(NAME, source.into())?;
        Ok(Self { env })
    }

    /// The conversation `messages` rendered, with the assistant's header appended when
    /// `add_generation_prompt`; `extra` is the rest of the context (the special tokens, any
    /// template argument: `tools`, `enable_thinking`, ...).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &BTreeMap<String, Value>,
    ) -> Result<String, Error> {
        self.render_values(Value::from(Serde(messages)), add_generation_prompt, extra)
    }

    /// [`render`](Self::render) with the messages as template values (messages with fields
    /// beyond role and content: `tool_calls`, content blocks).
    pub fn render_values(
        &self,
        messages: Value,
        add_generation_prompt: bool,
        extra: &BTreeMap<String, Value>,
    ) -> Result<String, Error> {
        let mut context: BTreeMap<String, Value> = extra.clone();
        context.insert("messages".into(), messages);
        context.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        // transformers passes these as None when not given.
        context.entry("tools".into()).or_insert(Value::from(()));
        context.entry("documents".into()).or_insert(Value::from(()));
        self.env.get_template(NAME)?.render(context)
    }
}
