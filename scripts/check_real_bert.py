#!/usr/bin/env python3
"""Prepare a real BERT checkpoint for `cargo run --example real_bert`.

The checkpoint is AntiBERTy (8 layers, hidden 512, 8 heads, 26M parameters; a `BertModel`
under `bert.` with `cls.` heads, saved by transformers 4.5), which the `antiberty==0.1.3` wheel
on PyPI ships as `trained_models/AntiBERTy_md_smooth/pytorch_model.bin`. It is too large to
commit, so this script writes it as safetensors, unchanged (legacy keys, `position_ids` buffer,
heads and all), with transformers 5.23's reference outputs of `BertModel` for a padded batch:

    pip download antiberty==0.1.3 --no-deps -d /tmp/pkgs
    python3 scripts/check_real_bert.py /tmp/pkgs/antiberty-0.1.3-py3-none-any.whl /tmp/antiberty
    cargo run --release --example real_bert -- /tmp/antiberty
"""

import io
import json
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import BertModel

MODEL = "antiberty/trained_models/AntiBERTy_md_smooth/"


def main(wheel: str, out: str) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        config = json.loads(z.read(MODEL + "config.json"))
        state = torch.load(io.BytesIO(z.read(MODEL + "pytorch_model.bin")), map_location="cpu", weights_only=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    # Cloned: the .bin ties the decoder to the word embeddings, which safetensors refuses.
    save_file({k: v.clone().contiguous() for k, v in state.items()}, str(out_dir / "model.safetensors"), metadata={"format": "pt"})

    model = BertModel.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    gen = torch.Generator().manual_seed(5)
    # AntiBERTy's vocabulary: 0-4 special tokens ([PAD] 0, [CLS] 2, [SEP] 3), 5-24 amino acids.
    ids = torch.randint(5, config["vocab_size"], (2, 24), generator=gen)
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0
    ids[1, 17:] = 0
    ids[1, 16] = 3
    types = torch.zeros_like(ids)
    with torch.no_grad():
        o = model(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
    tensors = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
    tensors["last_hidden_state"] = o.last_hidden_state.contiguous()
    tensors["pooler_output"] = o.pooler_output.contiguous()
    for i, h in enumerate(o.hidden_states):
        tensors[f"hidden_states.{i}"] = h.clone().contiguous()
    save_file(tensors, str(out_dir / "reference.safetensors"), metadata={"format": "pt"})
    print(f"{out_dir}: {len(state)} tensors, {len(o.hidden_states)} hidden states")


if __name__ == "__main__":
    main(*sys.argv[1:3])
