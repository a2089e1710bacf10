#!/usr/bin/env python3
"""Give each decoder fixture a small real tokenizer and chat template, and write what
transformers makes of them to `tests/fixtures/tokenizers/reference.json`.

Not needed by CI: the files are committed. Needs `transformers==5.23.0` and `tokenizers` (no
torch); reads the cache references `tests/fixtures/cache/*.safetensors` (from
`make_fixtures.py cache`), so run it after them:

    python3 scripts/make_tokenizers.py

The tokenizer: a BPE trained by `tokenizers` on `CORPUS` (a fixed text) to the fixtures'
vocabulary of 128 (`<unk>`, `<s>`, `</s>` at 0, 1, 2, as the configs' bos/eos ids say, then
merges; ChatML's `<|im_start|>` and `<|im_end|>` as added special tokens 126 and 127),
Metaspace pre-tokenizer and decoder (sentencepiece's `▁`). Per family:
- llama: `<s>` prepended by the post-processor, Llama 2's chat template (in
  `chat_template.jinja`, where transformers 5 saves it);
- qwen2_moe: no post-processor, Qwen2's ChatML template (in `tokenizer_config.json`, where older
  checkpoints hold it);
- mixtral: `<s>` prepended, Mistral's whitespace-controlled `[INST]` template
  (`chat_template.jinja`), `clean_up_tokenization_spaces: true` (which transformers 5 ignores
  for a BPE);
- gpt2: no post-processor, no chat template, `clean_up_tokenization_spaces: true` forced on the
  BPE (`clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output`).

`reference.json`, per family: `generate` (greedy `generate` of `GENERATE_NEW` tokens from
`GENERATE_PROMPT`, and from it as a chat user message where the family has a template, by the
fixture's model loaded eagerly in f32: needs torch), `encode` (texts, with and without special tokens), `batch` (a
left-padded batch as `tokenizer(texts, padding=True)` gives it, `padding_side="left"`, the pad
token the EOS when there is none), `chat` (conversations rendered by `apply_chat_template` with
and without the generation prompt, their ids, or transformers' error), and `decode` (the cache
reference's greedy tokens through `batch_decode`, with and without special tokens). `templates`:
extra templates rendered through transformers' jinja environment (`render_jinja_template`):
whitespace control, `tojson`, `namespace`, loop controls, Python string methods.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import tokenizers
import transformers
from safetensors.numpy import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
VOCAB = 128
SPECIAL = ["<unk>", "<s>", "</s>"]
CHATML = ["<|im_start|>", "<|im_end|>"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog, and the dog sleeps on.",
    "A model is patched while it is built: named classes are swapped for replacements.",
    "Weights are converted on the way in, so a stock checkpoint loads into the new model.",
    "Hello! How are you today? I'm fine, thanks; it's a good day to write Rust.",
    "What is the capital of France? Paris is the capital of France.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9, and symbols: [INST] [/INST] <<SYS>> <</SYS>> (a) {b} \"c\" #d.",
    "system\nYou are a helpful assistant.\nuser\nHi there\nassistant\nHello, how can I help?",
    "Don't stop: we've said they're here, you'll see; isn't it?",
    "Quantized experts as a plain list of linears; fused QKV attention for speed.",
]

LLAMA_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

QWEN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MISTRAL_TEMPLATE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

# Templates beyond the fixtures', rendered through transformers' environment with `context`.
EXTRA_TEMPLATES = [
    {
        "name": "trim_and_lstrip_blocks",
        "template": "<ul>\n  {% for m in messages %}\n    <li>{{ m.content }}</li>\n  {% endfor %}\n</ul>\n",
        "context": {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
    },
    {
        "name": "tojson_unescaped_unicode_and_options",
        "template": "{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}|{{ {'b': 1, 'a': [1.5, none, true]} | tojson(sort_keys=true) }}",
        "context": {"tools": [{"name": "<fetch> & \"go\"", "description": "café ☕", "n": 3}]},
    },
    {
        "name": "namespace_and_loop_controls",
        "template": "{% set ns = namespace(count=0, last='') %}{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
        "{% set ns.count = ns.count + 1 %}{% set ns.last = m.content %}{% if ns.count == 2 %}{% break %}{% endif %}{% endfor %}"
        "{{ ns.count }}:{{ ns.last }}:{{ loop is defined }}",
        "context": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}]},
    },
    {
        "name": "python_string_methods",
        "template": "{{ text.strip() }}|{{ text.lstrip() }}|{{ text.rstrip() }}|{{ text.split(',') | length }}|{{ text.strip().startswith('a') }}"
        "|{{ text.strip().endswith('c') }}|{{ text.upper() }}|{{ text.replace(',', ';') }}|{{ ', '.join(['x', 'y']) }}|{{ text.strip().split(',')[1] }}",
        "context": {"text": "  a,b,c \n"},
    },
    {
        "name": "dict_items_and_filters",
        "template": "{% for k, v in args | dictsort %}{{ k }}={{ v }};{% endfor %}{{ args | length }}{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
        "{{ (messages | last).content | trim }}{{ messages[-1]['content'] | default('none') }}{{ missing | default('d') }}{{ 7 // 2 }}{{ '%s-%d' | format('x', 3) }}",
        "context": {"args": {"z": 1, "a": "two"}, "messages": [{"role": "user", "content": " u "}, {"role": "assistant", "content": " a "}]},
    },
    {
        "name": "undefined_renders_empty",
        "template": "[{{ nothing }}]{% if nothing %}yes{% else %}no{% endif %}{% if messages[0].tool_calls is defined %}t{% endif %}",
        "context": {"messages": [{"role": "user", "content": "x"}]},
    },
    {
        "name": "raise_exception",
        "template": "{% if messages | length > 1 %}{{ raise_exception('only one message, please') }}{% endif %}ok",
        "context": {"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]},
    },
]

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  two leading spaces and a tab\there",
    "Don't stop: we've said they're here .",
    "unknown characters: ü and 漢",
    "<s>special tokens in text</s> and <|im_end|>",
    "",
]

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi there, how can I help?"},
        {"role": "user", "content": "  Tell me a fox story.  "},
    ],
    # Roles that do not alternate: Llama's and Mistral's templates raise.
    [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
]

# What `make_fixtures.py` writes about these files in tests/fixtures/VERSIONS.md.
VERSIONS_MD = """\
Tokenizers (`scripts/make_tokenizers.py`, transformers 5.23.0, tokenizers 0.23.3, no torch but
for its `generate` references): `llama/`, `qwen2_moe/`, `mixtral/` and `gpt2/` hold a
`tokenizer.json` (one BPE of 128 tokens trained on a fixed text, Metaspace; `<s>` prepended for
Llama and Mixtral) and a `tokenizer_config.json`; Llama's and Mixtral's chat templates are in
`chat_template.jinja`, Qwen2-MoE's in its `tokenizer_config.json`, GPT-2 has none.
`tokenizers/reference.json` holds transformers' encodings, padded batches, decodings (of the
cache references' greedy tokens too), chat renderings, greedy `generate` text, and extra
templates rendered in transformers' jinja environment.
"""

BATCH_PROMPTS = ["Hello world", "The quick brown fox jumps over the lazy dog."]

GENERATE_PROMPT = "The quick brown fox"
GENERATE_NEW = 12


def train() -> Tokenizer:
    """The shared BPE: 126 entries trained on `CORPUS`, then ChatML's two special tokens."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(CHATML), special_tokens=SPECIAL, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    assert tok.get_vocab_size() == VOCAB - len(CHATML), tok.get_vocab_size()
    tok.add_special_tokens(CHATML)
    assert tok.get_vocab_size() == VOCAB
    assert [tok.token_to_id(t) for t in SPECIAL] == [0, 1, 2]
    return tok


def with_bos(tok: Tokenizer) -> Tokenizer:
    tok = Tokenizer.from_str(tok.to_str())
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return tok


FAMILIES = {
    # name: (prepends <s>, chat template, template in tokenizer_config.json, clean_up_tokenization_spaces,
    # forced on a BPE)
    "llama": (True, LLAMA_TEMPLATE, False, False, False),
    "qwen2_moe": (False, QWEN_TEMPLATE, True, False, False),
    "mixtral": (True, MISTRAL_TEMPLATE, False, True, False),
    "gpt2": (False, None, False, True, True),
}


def write_tokenizer(name: str, base: Tokenizer) -> None:
    prepend, template, inline, clean_up, force_clean_up = FAMILIES[name]
    folder = FIXTURES / name
    tok = with_bos(base) if prepend else base
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "clean_up_tokenization_spaces": clean_up,
        "model_max_length": 64,
    }
    if force_clean_up:
        config["clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"] = True
    if name == "qwen2_moe":
        config["pad_token"] = "<|im_end|>"
    if template is not None and inline:
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    jinja = folder / "chat_template.jinja"
    if template is not None and not inline:
        jinja.write_text(template)
    elif jinja.exists():
        jinja.unlink()


def chat_reference(tok, conversation) -> dict:
    out = {"messages": conversation}
    for prompt in (False, True):
        key = "with_prompt" if prompt else "without_prompt"
        try:
            text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=prompt)
            ids = tok.apply_chat_template(conversation, tokenize=True, add_generation_prompt=prompt, return_dict=False)
            out[key] = {"text": text, "ids": list(ids)}
        except Exception as error:  # noqa: BLE001 - the reference records transformers' error
            out[key] = {"error": str(error)}
    return out


def family_reference(name: str) -> dict:
    tok = AutoTokenizer.from_pretrained(FIXTURES / name)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    encode = [
        {
            "text": t,
            "with_special": (ids := tok.encode(t, add_special_tokens=True)),
            "without_special": tok.encode(t, add_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            "decoded_keep_special": tok.decode(ids, skip_special_tokens=False),
        }
        for t in TEXTS
    ]
    batch = tok(BATCH_PROMPTS, padding=True)
    generated = load_file(str(FIXTURES / "cache" / f"{name}.safetensors"))["generated"].tolist()
    decode = {
        "ids": generated,
        "skip_special": tok.batch_decode(generated, skip_special_tokens=True),
        "keep_special": tok.batch_decode(generated, skip_special_tokens=False),
    }
    chats = [chat_reference(tok, c) for c in CONVERSATIONS] if tok.chat_template else []
    return {
        "generate": generate_reference(name, tok),
        "encode": encode,
        "batch": {"texts": BATCH_PROMPTS, "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "pad_token_id": tok.pad_token_id},
        "decode": decode,
        "chat": chats,
    }


def generate_reference(name: str, tok) -> dict:
    """Greedy text from the prompt, plain and (where there is a template) as a chat."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(FIXTURES / name, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    out = {"prompt": GENERATE_PROMPT, "max_new_tokens": GENERATE_NEW}
    prompts = {"plain": tok(GENERATE_PROMPT, return_tensors="pt")["input_ids"]}
    if tok.chat_template:
        chat = [{"role": "user", "content": GENERATE_PROMPT}]
        prompts["chat"] = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    for kind, ids in prompts.items():
        with torch.no_grad():
            new = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=GENERATE_NEW, do_sample=False)[0, ids.shape[1]:]
        out[kind] = {"prompt_ids": ids[0].tolist(), "new_tokens": new.tolist(), "text": tok.decode(new, skip_special_tokens=True)}
    return out


def template_reference(case: dict) -> dict:
    context = dict(case["context"])
    messages = context.pop("messages", [])
    try:
        rendered, _ = render_jinja_template([messages], chat_template=case["template"], **context)
        return {**case, "rendered": rendered[0]}
    except Exception as error:  # noqa: BLE001
        return {**case, "error": str(error)}


def main() -> None:
    base = train()
    for name in FAMILIES:
        write_tokenizer(name, base)
    reference = {
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "families": {name: family_reference(name) for name in FAMILIES},
        "templates": [template_reference(c) for c in EXTRA_TEMPLATES],
    }
    out = FIXTURES / "tokenizers"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    (out / "reference.json").write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")
    for name, fam in reference["families"].items():
        print(name, fam["encode"][1]["with_special"], [c["with_prompt"].get("text", c["with_prompt"].get("error")) for c in fam["chat"]][:1])
    for t in reference["templates"]:
        print(t["name"], repr(t.get("rendered", t.get("error"))))


if __name__ == "__main__":
    sys.exit(main())
