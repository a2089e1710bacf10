//! Tokenizers and chat templates against transformers 5.23 (`tests/fixtures/tokenizers/
//! reference.json`, from `scripts/make_tokenizers.py`): each decoder fixture's `tokenizer.json`
//! and chat template, encoded, padded, decoded and rendered as `AutoTokenizer` does; extra
//! templates through transformers' jinja environment; and text out of `generate` equal to
//! transformers' `batch_decode` of its tokens.

use std::collections::BTreeMap;

use burn::backend::NdArray;
use burn::prelude::*;
use patcher_burn::LoadOptions;
use patcher_models::auto::{AutoModelForCausalLm, LoadedCausalLm};
use patcher_models::prelude::*;
use patcher_models::replacements::Patch;
use patcher_models::tokenizer::{
    ChatMessage, ChatTemplate, TextStreamer, Tokenizer, TokenizerError,
};
use serde::Deserialize;

use crate::common::{fixtures, read_file};

#[derive(Deserialize)]
struct Reference {
    families: BTreeMap<String, FamilyReference>,
    templates: Vec<TemplateCase>,
}

#[derive(Deserialize)]
struct FamilyReference {
    generate: GenerateCase,
    encode: Vec<EncodeCase>,
    batch: BatchCase,
    decode: DecodeCase,
    chat: Vec<ChatCase>,
}

#[derive(Deserialize)]
struct GenerateCase {
    prompt: String,
    max_new_tokens: usize,
    plain: Generation,
    chat: Option<Generation>,
}

#[derive(Deserialize)]
struct Generation {
    prompt_ids: Vec<i64>,
    new_tokens: Vec<i64>,
    text: String,
}

#[derive(Deserialize)]
struct EncodeCase {
    text: String,
    with_special: Vec<i64>,
    without_special: Vec<i64>,
    decoded_skip_special: String,
    decoded_keep_special: String,
}

#[derive(Deserialize)]
struct BatchCase {
    texts: Vec<String>,
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
}

#[derive(Deserialize)]
struct DecodeCase {
    ids: Vec<Vec<i64>>,
    skip_special: Vec<String>,
    keep_special: Vec<String>,
}

#[derive(Deserialize)]
struct ChatCase {
    messages: Vec<Message>,
    with_prompt: Rendered,
    without_prompt: Rendered,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: String,
}

#[derive(Deserialize)]
struct Rendered {
    text: Option<String>,
    ids: Option<Vec<i64>>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct TemplateCase {
    name: String,
    template: String,
    // Read straight into template values, so maps keep their order (what `tojson` prints).
    context: minijinja::Value,
    rendered: Option<String>,
    error: Option<String>,
}

fn reference() -> Reference {
    let path = fixtures().join("tokenizers").join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

const DECODERS: [&str; 4] = ["llama", "qwen2_moe", "mixtral", "gpt2"];

fn tokenizer(family: &str) -> Tokenizer {
    Tokenizer::from_pretrained(fixtures().join(family)).unwrap_or_else(|e| panic!("{family}: {e}"))
}

#[test]
fn encode_and_decode_as_transformers() {
    let reference = reference();
    for family in DECODERS {
        let tok = tokenizer(family);
        let expected = &reference.families[family];
        assert!(!expected.encode.is_empty());
        for case in &expected.encode {
            let text = &case.text;
            assert_eq!(
                tok.encode(text, true).unwrap(),
                case.with_special,
                "{family} {text:?}"
            );
            let plain = tok.encode(text, false).unwrap();
            assert_eq!(plain, case.without_special, "{family} {text:?}");
            let ids = &case.with_special;
            let skip = tok.decode(ids, true).unwrap();
            assert_eq!(skip, case.decoded_skip_special, "{family} {text:?}");
            let keep = tok.decode(ids, false).unwrap();
            assert_eq!(keep, case.decoded_keep_special, "{family} {text:?}");
        }
        let decode = &expected.decode;
        assert_eq!(
            tok.batch_decode(&decode.ids, true).unwrap(),
            decode.skip_special,
            "{family}"
        );
        assert_eq!(
            tok.batch_decode(&decode.ids, false).unwrap(),
            decode.keep_special,
            "{family}"
        );
    }
}

#[test]
fn clean_up_spaces_only_where_transformers_applies_it() {
    // GPT-2's config forces the clean-up on its BPE, Mixtral's asks for it (ignored on a BPE),
    // Llama's leaves it off: the reference has " ." kept by two and removed by one.
    let text = "Don't stop: we've said they're here .";
    let reference = reference();
    for (family, cleaned) in [("gpt2", true), ("mixtral", false), ("llama", false)] {
        let case = reference.families[family]
            .encode
            .iter()
            .find(|c| c.text == text)
            .unwrap();
        assert_eq!(
            case.decoded_keep_special.ends_with("here."),
            cleaned,
            "{family}"
        );
        let tok = tokenizer(family);
        assert_eq!(
            tok.decode(&case.with_special, false).unwrap(),
            case.decoded_keep_special
        );
    }
}

#[test]
fn left_padded_batches_as_transformers() {
    let reference = reference();
    for family in DECODERS {
        let tok = tokenizer(family);
        let expected = &reference.families[family].batch;
        let texts: Vec<&str> = expected.texts.iter().map(String::as_str).collect();
        let batch = tok.encode_batch(&texts, true).unwrap();
        assert_eq!(batch.input_ids, expected.input_ids, "{family}");
        assert_eq!(batch.attention_mask, expected.attention_mask, "{family}");
        assert!(
            batch.attention_mask[0].contains(&0),
            "{family}: the batch must be padded"
        );
    }
}

#[test]
fn chat_templates_render_as_transformers() {
    let reference = reference();
    let mut rendered = 0;
    for family in ["llama", "qwen2_moe", "mixtral"] {
        let tok = tokenizer(family);
        for case in &reference.families[family].chat {
            let messages: Vec<ChatMessage> = (case.messages.iter())
                .map(|m| ChatMessage::new(&m.role, &m.content))
                .collect();
            for (prompt, expected) in [(true, &case.with_prompt), (false, &case.without_prompt)] {
                let got = tok.apply_chat_template(&messages, prompt);
                match (&expected.text, &expected.error) {
                    (Some(text), _) => {
                        let got = got.unwrap_or_else(|e| panic!("{family}: {e}"));
                        assert_eq!(&got, text, "{family} prompt={prompt}");
                        let ids = tok.encode(&got, false).unwrap();
                        assert_eq!(Some(&ids), expected.ids.as_ref(), "{family}");
                        rendered += 1;
                    }
                    (None, Some(error)) => {
                        let err = got.expect_err("transformers raised");
                        assert!(matches!(err, TokenizerError::Template(_)), "{err}");
                        assert!(err.to_string().contains(error.as_str()), "{err} / {error}");
                    }
                    (None, None) => panic!("{family}: an empty reference"),
                }
            }
        }
    }
    assert!(rendered >= 8, "{rendered}");
    // GPT-2's tokenizer has no chat template: a typed error, not an empty prompt.
    let err = tokenizer("gpt2").apply_chat_template(&[ChatMessage::user("hi")], true);
    assert!(
        matches!(err, Err(TokenizerError::NoChatTemplate(None))),
        "{err:?}"
    );
}

#[test]
fn templates_render_as_in_transformers_jinja_environment() {
    let reference = reference();
    assert!(reference.templates.len() >= 7);
    for case in reference.templates {
        let template = ChatTemplate::new(case.template.clone()).unwrap();
        let mut context: BTreeMap<String, minijinja::Value> = BTreeMap::new();
        let mut messages = minijinja::Value::from(Vec::<minijinja::Value>::new());
        for key in case.context.try_iter().unwrap() {
            let value = case.context.get_item(&key).unwrap();
            match key.as_str().unwrap() {
                "messages" => messages = value,
                name => {
                    context.insert(name.to_string(), value);
                }
            }
        }
        let got = template.render_values(messages, false, &context);
        match (case.rendered, case.error) {
            (Some(text), _) => assert_eq!(got.unwrap(), text, "{}", case.name),
            (None, Some(error)) => {
                let err = got.unwrap_err().to_string();
                assert!(err.contains(&error), "{}: {err}", case.name);
            }
            (None, None) => panic!("{}: an empty reference", case.name),
        }
    }
}

#[test]
fn broken_tokenizer_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_pretrained(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::Missing(_)), "{err}");
    std::fs::write(dir.path().join("tokenizer.json"), "{\"model\": 3}").unwrap();
    let err = Tokenizer::from_pretrained(dir.path()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::Tokenizer { path: Some(_), .. }),
        "{err}"
    );
    let good = std::fs::read(fixtures().join("llama").join("tokenizer.json")).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), good).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        "{\"eos_token\": [1]",
    )
    .unwrap();
    let err = Tokenizer::from_pretrained(dir.path()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::Config { path: Some(_), .. }),
        "{err}"
    );
    std::fs::write(dir.path().join("tokenizer_config.json"), "{}").unwrap();
    std::fs::write(dir.path().join("chat_template.jinja"), "{% for %}").unwrap();
    let tok = Tokenizer::from_pretrained(dir.path()).unwrap();
    let err = tok
        .apply_chat_template(&[ChatMessage::user("x")], true)
        .unwrap_err();
    assert!(matches!(err, TokenizerError::Template(_)), "{err}");
    // No pad token and no EOS: an unequal batch cannot be padded. An id past the vocabulary is
    // left out of the text, as transformers' decode leaves it; a negative one is an error.
    let err = tok.encode_batch(&["a", "a longer text"], true).unwrap_err();
    assert!(matches!(err, TokenizerError::NoPadToken), "{err}");
    let text = tok.decode(&[5, 128, 6, u32::MAX as i64], true).unwrap();
    assert_eq!(text, tok.decode(&[5, 6], true).unwrap());
    assert!(!text.is_empty());
    assert!(matches!(
        tok.decode(&[-1], true),
        Err(TokenizerError::UnknownId { id: -1, .. })
    ));
}

/// A fixture's folder, its model through `AutoModelForCausalLm` (NdArray, unpatched) and its
/// tokenizer.
fn load_auto(
    family: &str,
    device: &burn::backend::ndarray::NdArrayDevice,
) -> (
    std::path::PathBuf,
    Box<dyn LoadedCausalLm<NdArray>>,
    Tokenizer,
) {
    let dir = fixtures().join(family);
    let loaded = AutoModelForCausalLm::<NdArray>::new()
        .from_pretrained(&dir, Patch::NONE, device, &LoadOptions::default())
        .unwrap();
    (dir, loaded, tokenizer(family))
}

#[test]
fn generated_text_equals_transformers_batch_decode() {
    // Text out of the auto-loaded model: `generate` on the cache reference's padded prompt, its
    // tokens decoded (and streamed) to the strings transformers' `batch_decode` gave.
    type B = NdArray;
    let device = Default::default();
    let reference = reference();
    for family in DECODERS {
        let (_, loaded, tok) = load_auto(family, &device);
        let cache = read_file(
            &fixtures()
                .join("cache")
                .join(format!("{family}.safetensors")),
        );
        let ints = |name: &str| {
            let t = &cache[name];
            let values: Vec<i64> = t.data.iter().map(|&v| v as i64).collect();
            Tensor::<B, 2, Int>::from_data(
                TensorData::new(values, [t.shape[0], t.shape[1]]),
                &device,
            )
        };
        let expected = &reference.families[family].decode;
        let config = GenerationConfig::default()
            .with_max_new_tokens(expected.ids[0].len())
            .with_eos_token_ids(vec![]);
        let mut streamers = [TextStreamer::new(&tok, true), TextStreamer::new(&tok, true)];
        let mut streamed = [String::new(), String::new()];
        let out = loaded
            .causal_lm()
            .generate_streaming(
                ints("input_ids"),
                Some(ints("attention_mask")),
                &config,
                &mut |row, token| {
                    streamed[row].push_str(&streamers[row].push(token).unwrap());
                },
            )
            .unwrap();
        assert_eq!(out.tokens, expected.ids, "{family}");
        let text = tok.batch_decode(&out.tokens, true).unwrap();
        assert_eq!(text, expected.skip_special, "{family}");
        for (row, streamer) in streamers.iter_mut().enumerate() {
            streamed[row].push_str(&streamer.finish().unwrap());
            assert_eq!(
                streamed[row], expected.skip_special[row],
                "{family} streamed"
            );
        }
    }
}

#[test]
fn text_prompts_generate_transformers_greedy_text() {
    // Text to text, each step as transformers: the prompt (plain, and through the chat
    // template where there is one) encoded to its ids, greedy `generate` with the checkpoint's
    // generation_config.json (its EOS stops), the new tokens decoded to its text.
    type B = NdArray;
    let device = Default::default();
    let reference = reference();
    let mut chats = 0;
    for family in DECODERS {
        let (dir, loaded, tok) = load_auto(family, &device);
        let case = &reference.families[family].generate;
        let config = GenerationConfig::for_checkpoint(&dir)
            .unwrap()
            .with_max_new_tokens(case.max_new_tokens);
        let chat = case.chat.as_ref().map(|c| {
            let text = tok.apply_chat_template(&[ChatMessage::user(&case.prompt)], true);
            (tok.encode(&text.unwrap(), false).unwrap(), c)
        });
        let plain = (tok.encode(&case.prompt, true).unwrap(), &case.plain);
        for (ids, expected) in std::iter::once(plain).chain(chat) {
            assert_eq!(ids, expected.prompt_ids, "{family}");
            let shape = [1, ids.len()];
            let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, shape), &device);
            let out = loaded.causal_lm().generate(input, None, &config).unwrap();
            assert_eq!(out.tokens[0], expected.new_tokens, "{family}");
            assert_eq!(
                tok.decode(&out.tokens[0], true).unwrap(),
                expected.text,
                "{family}"
            );
        }
        chats += usize::from(case.chat.is_some());
    }
    assert_eq!(chats, 3);
}
