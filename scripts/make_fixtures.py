#!/usr/bin/env python3
"""Generate the tiny test checkpoints and transformers' reference outputs in tests/fixtures/.

Not needed by CI: the generated files are committed. Rerun only to regenerate them, with the
versions recorded in tests/fixtures/VERSIONS.md (transformers==5.23.0, torch, safetensors).

    python3 scripts/make_fixtures.py
    python3 scripts/make_fixtures.py llama_lora   # only the PEFT adapter fixture (needs peft)
    python3 scripts/make_fixtures.py cache        # only the decoders' cache references
    python3 scripts/make_fixtures.py gpt2         # only GPT-2's fixtures (and the cache references)

Every mode that writes the cache references then runs `make_tokenizers.py` (the tokenizers and
their references, which decode the cache references' tokens).

What it writes, per model directory:
- config.json + model.safetensors (or sharded files + model.safetensors.index.json), written by
  `save_pretrained`, so the on-disk keys are exactly what hub checkpoints have (per-expert
  `mlp.experts.{e}.gate_proj.weight` for Qwen2-MoE: transformers 5 reverts its fused in-memory
  layout on save);
- reference.safetensors: `input_ids` (I64, [2, 7]), `logits` (F32, [2, 7, vocab]) and
  `hidden_states.{i}` (F32, [2, 7, hidden]) for i in 0..=num_hidden_layers, computed by reloading
  the saved checkpoint with `from_pretrained(dtype=float32, attn_implementation="eager",
  experts_implementation="eager")`, so the reference reflects the bytes on disk.

Initialisation: transformers' default init is too gentle to catch bugs (norm weights all 1,
biases 0, near-uniform attention and routing), so every parameter is overwritten from a seeded
generator: norm weights 1 + 0.3*randn, biases 0.2*randn, linear/expert weights std 0.15,
embeddings std 1, router weights std 0.3 (decisive top-k with a real second expert; the script
checks the margin between the k-th and (k+1)-th router logit so routing cannot flip under float
noise).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path

import safetensors
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
import make_tokenizers
from transformers import (
    BertConfig,
    BertModel,
    DynamicCache,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

BATCH = 2
SEQ = 7
INPUT_SEED = 1234


# What every tiny decoder shares: vocab 128, hidden 64, 4 heads over 2 KV heads (grouped-query
# attention, 2 query heads per KV head), untied lm_head.
TINY_DECODER = dict(
    vocab_size=128,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    hidden_act="silu",
    max_position_embeddings=64,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
)


def qwen2_moe_config() -> Qwen2MoeConfig:
    return Qwen2MoeConfig(
        **TINY_DECODER,
        intermediate_size=96,  # dense MLP size, unused: every layer is sparse here
        num_hidden_layers=2,
        rms_norm_eps=1e-6,
        # Non-default theta so a model ignoring the config's value fails parity.
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        decoder_sparse_step=1,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=48,
        num_experts_per_tok=2,
        num_experts=4,
        norm_topk_prob=False,
        qkv_bias=True,
    )


def qwen2_moe_dense_config() -> Qwen2MoeConfig:
    # Dense and sparse layers mixed, both ways transformers makes a layer dense: with
    # decoder_sparse_step=2 only layers 1 and 3 would be sparse, and mlp_only_layers makes 3 dense.
    config = qwen2_moe_config()
    config.num_hidden_layers = 4
    config.layer_types = ["full_attention"] * 4
    config.decoder_sparse_step = 2
    config.mlp_only_layers = [3]
    config.intermediate_size = 80
    return config


def llama_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=112,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention
        # head_dim deliberately != hidden_size / num_attention_heads (16): q_proj is 64 -> 96.
        head_dim=24,
        hidden_act="silu",
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
    )


def mixtral_config() -> MixtralConfig:
    # 4 experts of width 32, top-2; a non-default theta (Mixtral's default is 1e6) and a sliding
    # window shorter than the inputs.
    return MixtralConfig(
        **TINY_DECODER,
        num_hidden_layers=2,
        rms_norm_eps=1e-5,
        intermediate_size=32, num_local_experts=4, num_experts_per_tok=2,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0}, sliding_window=5,
    )


def to_hub_style_config(path: Path) -> None:
    """Rewrite a saved v5 config.json the way hub Mixtral checkpoints write theirs: top-level
    `rope_theta` instead of `rope_parameters`, `torch_dtype` instead of `dtype`."""
    config = json.loads((path / "config.json").read_text())
    rope = config.pop("rope_parameters")
    assert rope == {"rope_type": "default", "rope_theta": rope["rope_theta"]}, rope
    config["rope_theta"] = rope["rope_theta"]
    config["torch_dtype"] = config.pop("dtype")
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def seeded_init(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter from a seeded generator, by role (see module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            # `.lower()`: BERT's norms are `LayerNorm`; GPT-2's are `ln_1`, `ln_2`, `ln_f`.
            gpt2_norm = name.endswith(".weight") and name.split(".")[-2].startswith("ln_")
            if name.lower().endswith("norm.weight") or gpt2_norm:
                value = 1.0 + 0.3 * noise
            elif name.endswith(".bias"):
                value = 0.2 * noise
            elif name.endswith(("embed_tokens.weight", "embeddings.weight")):
                value = noise
            elif name.endswith(("wte.weight", "wpe.weight")):
                # GPT-2's head is tied to `wte`: logits of the other fixtures' size.
                value = 0.3 * noise
            elif name.endswith("mlp.gate.weight"):
                value = 0.3 * noise
            else:
                value = 0.15 * noise
            param.copy_(value)


def input_ids(vocab: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randint(0, vocab, (BATCH, SEQ), generator=gen, dtype=torch.int64)


def load_eager(cls, path: Path):
    model = cls.from_pretrained(
        path,
        dtype=torch.float32,
        attn_implementation="eager",
        experts_implementation="eager",
    )
    model.eval()
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    if hasattr(model.config, "_experts_implementation"):
        assert model.config._experts_implementation == "eager", model.config._experts_implementation
    return model


def check_hidden_state_convention(model, ids: torch.Tensor, out) -> str:
    """Work out, with hooks, what `output_hidden_states` returns, and assert it."""
    captured = {}
    hooks = []
    if hasattr(model, "transformer"):
        # GPT-2: the embedding output is the sum of token and position embeddings, the dropout's
        # output.
        layers, embed, norm = model.transformer.h, model.transformer.drop, model.transformer.ln_f
    else:
        layers, embed, norm = model.model.layers, model.model.embed_tokens, model.model.norm
    for i, layer in enumerate(layers):
        hooks.append(
            layer.register_forward_hook(lambda _m, _i, o, i=i: captured.__setitem__(f"layer{i}", o))
        )
    hooks.append(embed.register_forward_hook(lambda _m, _i, o: captured.__setitem__("embed", o)))
    hooks.append(norm.register_forward_hook(lambda _m, _i, o: captured.__setitem__("norm", o)))
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()

    def unwrap(o):
        return o[0] if isinstance(o, tuple) else o

    hs = out.hidden_states
    n = len(layers)
    assert len(hs) == n + 1, len(hs)
    assert torch.equal(hs[0], unwrap(captured["embed"])), "hidden_states[0] is not the embedding output"
    for i in range(1, n):
        assert torch.equal(hs[i], unwrap(captured[f"layer{i - 1}"])), f"hidden_states[{i}] != layer {i - 1} output"
    last_is_norm = torch.equal(hs[n], unwrap(captured["norm"]))
    last_is_raw = torch.equal(hs[n], unwrap(captured[f"layer{n - 1}"]))
    assert last_is_norm and not last_is_raw, (last_is_norm, last_is_raw)
    return (
        f"hidden_states has num_hidden_layers + 1 = {n + 1} entries: [0] = embedding output, "
        f"[i] for 1 <= i < {n} = output of decoder layer i-1, [{n}] = final norm applied to the "
        f"last decoder layer's output (the model's last_hidden_state), not the raw layer output"
    )


def routing_gap(model, ids: torch.Tensor) -> tuple[float, float]:
    """Smallest gap between the k-th and (k+1)-th router logit over all tokens and layers (softmax
    is monotonic, so this is the margin that float noise would have to overcome to change the
    selection), and the mean routing weight of the k-th expert (how much it contributes)."""
    with torch.no_grad():
        out = model(input_ids=ids, output_router_logits=True)
    k = model.config.num_experts_per_tok
    gap = float("inf")
    weights = []
    for logits in out.router_logits:
        top = torch.topk(logits.float(), k + 1, dim=-1).values
        gap = min(gap, float((top[:, k - 1] - top[:, k]).min()))
        probs = torch.topk(torch.softmax(logits.float(), dim=-1), k, dim=-1).values
        weights.append(float(probs[:, k - 1].mean()))
    return gap, sum(weights) / len(weights)


def checked_moe_reference(cls, path: Path, ids: torch.Tensor, in_memory, name: str, notes: dict):
    """Reload the MoE checkpoint at `path` as transformers does, check it computes what the
    in-memory model does (which may use non-eager kernels) and that its routing is decisive
    (the margin is recorded in `notes`), and write its reference. Returns the reloaded model and
    the hidden-state convention."""
    ref = load_eager(cls, path)
    with torch.no_grad():
        torch.testing.assert_close(ref(input_ids=ids).logits, in_memory(input_ids=ids).logits, rtol=0, atol=1e-5)
    gap, weight = routing_gap(ref, ids)
    print(f"{name}: smallest top-k router logit margin = {gap:.4g}, mean k-th weight = {weight:.3f}")
    assert gap > 1e-2, "routing too close to a tie; change the seed"
    notes[f"{name}_min_topk_logit_margin"] = gap
    return ref, save_reference(ref, ids, path)


def fused_layout_fixture(model, name: str, ids: torch.Tensor, reference_model, not_on_disk: str) -> str:
    """Save `model` in transformers 5's fused expert layout (`save_original_format=False`) as
    fixture `name`, check its keys (fused experts, no key containing `not_on_disk`), that it
    computes exactly what `reference_model` does, and write its reference."""
    path = fresh_dir(FIXTURES / name)
    model.save_pretrained(path, save_original_format=False)
    keys = on_disk_keys(path)
    for expected in ("model.layers.0.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.down_proj", "model.layers.0.mlp.gate.weight"):
        assert expected in keys, f"{expected} not on disk; keys: {keys}"
    assert not any(not_on_disk in k for k in keys), f"`{not_on_disk}` keys in the fused layout"
    ref = load_eager(type(model), path)
    with torch.no_grad():
        torch.testing.assert_close(ref(input_ids=ids).logits, reference_model(input_ids=ids).logits, rtol=0, atol=0)
    return save_reference(ref, ids, path)


def save_reference(model, ids: torch.Tensor, path: Path) -> str:
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    convention = check_hidden_state_convention(model, ids, out)
    tensors = {"input_ids": ids.contiguous(), "logits": out.logits.float().contiguous()}
    for i, h in enumerate(out.hidden_states):
        tensors[f"hidden_states.{i}"] = h.float().contiguous()
    save_file(tensors, str(path / "reference.safetensors"), metadata={"format": "pt"})
    return convention


def on_disk_keys(path: Path) -> list[str]:
    keys = []
    for f in sorted(path.glob("*.safetensors")):
        if f.name == "reference.safetensors":
            continue
        with safe_open(str(f), "pt") as handle:
            keys.extend(handle.keys())
    return sorted(keys)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def shard_of(path: Path, key: str) -> str:
    index = json.loads((path / "model.safetensors.index.json").read_text())
    return index["weight_map"][key]


def build(cls, config, seed: int):
    torch.manual_seed(seed)
    model = cls(config)
    seeded_init(model, seed)
    model.eval()
    return model


def main() -> None:
    torch.use_deterministic_algorithms(True)
    notes: dict[str, object] = {}
    conventions = {}

    # --- Qwen2-MoE --------------------------------------------------------------------------
    qwen = build(Qwen2MoeForCausalLM, qwen2_moe_config(), seed=20260001)
    ids = input_ids(qwen.config.vocab_size)
    qdir = fresh_dir(FIXTURES / "qwen2_moe")
    qwen.save_pretrained(qdir)
    keys = on_disk_keys(qdir)
    for expected in (
        "model.layers.0.mlp.experts.0.gate_proj.weight",
        "model.layers.0.mlp.experts.3.up_proj.weight",
        "model.layers.1.mlp.experts.2.down_proj.weight",
        "model.layers.0.mlp.gate.weight",
        "model.layers.0.mlp.shared_expert_gate.weight",
        "model.layers.0.self_attn.q_proj.bias",
    ):
        assert expected in keys, f"{expected} not on disk; keys: {keys}"
    assert not any(k.endswith("experts.gate_up_proj") for k in keys), "fused experts saved as-is"
    qref, conventions["qwen2_moe"] = checked_moe_reference(Qwen2MoeForCausalLM, qdir, ids, qwen, "qwen2_moe", notes)

    # Sharded copy: small shards so that one layer's expert group spans two files.
    sdir = fresh_dir(FIXTURES / "qwen2_moe_sharded")
    qwen.save_pretrained(sdir, max_shard_size="100KB")
    files = {shard_of(sdir, f"model.layers.0.mlp.experts.{e}.{p}.weight") for e in range(4) for p in ("gate_proj", "up_proj", "down_proj")}
    print(f"qwen2_moe_sharded: layer 0 experts live in {sorted(files)}")
    assert len(files) >= 2, "expert group does not span two shards; adjust max_shard_size"
    sref = load_eager(Qwen2MoeForCausalLM, sdir)
    conventions["qwen2_moe_sharded"] = save_reference(sref, ids, sdir)

    # transformers 5's fused expert layout (`save_original_format=False`): the runtime params
    # `mlp.experts.gate_up_proj [E, 2I, H]` and `mlp.experts.down_proj [E, H, I]` as they are.
    conventions["qwen2_moe_fused"] = fused_layout_fixture(qwen, "qwen2_moe_fused", ids, qref, ".experts.0.")

    # bf16 copy for dtype tests; its reference is the bf16 weights upcast to f32 by transformers.
    bdir = fresh_dir(FIXTURES / "qwen2_moe_bf16")
    build(Qwen2MoeForCausalLM, qwen2_moe_config(), seed=20260001).to(torch.bfloat16).save_pretrained(bdir)
    bref = load_eager(Qwen2MoeForCausalLM, bdir)
    bgap, _ = routing_gap(bref, ids)
    print(f"qwen2_moe_bf16: smallest top-k router logit margin = {bgap:.4g}")
    assert bgap > 1e-2, "routing too close to a tie; change the seed"
    notes["qwen2_moe_bf16_min_topk_logit_margin"] = bgap
    conventions["qwen2_moe_bf16"] = save_reference(bref, ids, bdir)

    # Dense layers among the sparse ones: layers 0, 2 and 3 have a Qwen2MoeMLP as their `mlp`.
    dense = build(Qwen2MoeForCausalLM, qwen2_moe_dense_config(), seed=20260004)
    ddir = fresh_dir(FIXTURES / "qwen2_moe_dense")
    dense.save_pretrained(ddir)
    dkeys = on_disk_keys(ddir)
    for i in (0, 2, 3):
        assert f"model.layers.{i}.mlp.gate_proj.weight" in dkeys and not any(k.startswith(f"model.layers.{i}.mlp.experts.") for k in dkeys), i
    assert "model.layers.1.mlp.experts.3.up_proj.weight" in dkeys, dkeys
    _, conventions["qwen2_moe_dense"] = checked_moe_reference(Qwen2MoeForCausalLM, ddir, ids, dense, "qwen2_moe_dense", notes)

    # --- Llama ------------------------------------------------------------------------------
    llama = build(LlamaForCausalLM, llama_config(), seed=20260002)
    lids = input_ids(llama.config.vocab_size)
    ldir = fresh_dir(FIXTURES / "llama")
    llama.save_pretrained(ldir)
    lkeys = on_disk_keys(ldir)
    assert "lm_head.weight" in lkeys and "model.layers.0.self_attn.q_proj.weight" in lkeys
    assert not any(k.endswith(".bias") for k in lkeys), "llama fixture must have no biases"
    lref = load_eager(LlamaForCausalLM, ldir)
    with torch.no_grad():
        torch.testing.assert_close(lref(input_ids=lids).logits, llama(input_ids=lids).logits, rtol=0, atol=1e-5)  # the in-memory model may use non-eager kernels
    conventions["llama"] = save_reference(lref, lids, ldir)

    # Sharded copy: q_proj and k_proj/v_proj of one layer in different files (a fused-QKV group
    # spanning two shards).
    lsdir = fresh_dir(FIXTURES / "llama_sharded")
    llama.save_pretrained(lsdir, max_shard_size="60KB")
    spans = [
        i
        for i in range(llama.config.num_hidden_layers)
        if len({shard_of(lsdir, f"model.layers.{i}.self_attn.{p}_proj.weight") for p in "qkv"}) >= 2
    ]
    print(f"llama_sharded: layers whose q/k/v span two shards: {spans}")
    assert spans, "no q/k/v group spans two shards; adjust max_shard_size"
    lsref = load_eager(LlamaForCausalLM, lsdir)
    conventions["llama_sharded"] = save_reference(lsref, lids, lsdir)

    # Tied embeddings, as most small hub models: lm_head *is* embed_tokens, and the checkpoint
    # holds the one tensor.
    tied_config = llama_config()
    tied_config.tie_word_embeddings = True
    tied = build(LlamaForCausalLM, tied_config, seed=20260003)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    tdir = fresh_dir(FIXTURES / "llama_tied")
    tied.save_pretrained(tdir)
    tkeys = on_disk_keys(tdir)
    assert "lm_head.weight" not in tkeys and "model.embed_tokens.weight" in tkeys, tkeys
    tref = load_eager(LlamaForCausalLM, tdir)
    conventions["llama_tied"] = save_reference(tref, lids, tdir)

    # --- Mixtral ----------------------------------------------------------------------------
    mixtral = build(MixtralForCausalLM, mixtral_config(), seed=20260003)
    mids = input_ids(mixtral.config.vocab_size)
    mdir = fresh_dir(FIXTURES / "mixtral")
    mixtral.save_pretrained(mdir)
    to_hub_style_config(mdir)
    mkeys = on_disk_keys(mdir)
    for expected in (
        "model.layers.0.block_sparse_moe.experts.0.w1.weight",
        "model.layers.0.block_sparse_moe.experts.3.w3.weight",
        "model.layers.1.block_sparse_moe.experts.2.w2.weight",
        "model.layers.0.block_sparse_moe.gate.weight",
    ):
        assert expected in mkeys, f"{expected} not on disk; keys: {mkeys}"
    assert not any(".mlp." in k for k in mkeys), "in-memory names saved as-is"
    # The reference comes from the hub-style config: transformers reads it too.
    mref, conventions["mixtral"] = checked_moe_reference(MixtralForCausalLM, mdir, mids, mixtral, "mixtral", notes)
    assert mref.config.rope_parameters["rope_theta"] == 5000.0, mref.config.rope_parameters

    # transformers 5's own layout (`save_original_format=False`), with its v5 config.
    # (`block_sparse_moe` is only the hub's name: the router is at `mlp.gate` on disk too.)
    conventions["mixtral_fused"] = fused_layout_fixture(mixtral, "mixtral_fused", mids, mref, "block_sparse_moe")

    # --- BERT -------------------------------------------------------------------------------
    conventions["bert"] = bert_fixtures()

    # --- GPT-2 ------------------------------------------------------------------------------
    conventions["gpt2"] = gpt2_fixtures()

    write_cache_references()
    make_tokenizers.main()
    write_op_references()
    conventions["llama_lora"] = llama_lora_fixture()
    write_conv1d_fixture()

    # --- Versions and conventions -----------------------------------------------------------
    for name, text in conventions.items():
        print(f"{name}: {text}")
    versions = {
        "python": platform.python_version(),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "numpy": __import__("numpy").__version__,
        "platform": platform.platform(),
    }
    (FIXTURES / "versions.json").write_text(json.dumps({**versions, **notes}, indent=2) + "\n")
    write_versions_md(versions, notes, conventions)
    total = sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file())
    print(f"fixtures total: {total / 1024:.1f} KiB")


def gpt2_config() -> GPT2Config:
    # GPT-2's defaults (gelu_new, tied head, learned positions) at a tiny size; n_inner left at
    # its default (4 * n_embd).
    return GPT2Config(vocab_size=128, n_positions=64, n_embd=64, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2)


def gpt2_fixtures() -> str:
    """tests/fixtures/gpt2/ (as `save_pretrained` writes it: `transformer.` keys, the head tied
    to `transformer.wte`) and gpt2_legacy/ (the same weights as the original hub checkpoints
    hold them: no `transformer.` prefix, and each block's causal-mask buffer `h.{i}.attn.bias`
    [1, 1, n_positions, n_positions]), each with its reference."""
    model = build(GPT2LMHeadModel, gpt2_config(), seed=20260020)
    assert model.lm_head.weight is model.transformer.wte.weight
    ids = input_ids(model.config.vocab_size)
    gdir = fresh_dir(FIXTURES / "gpt2")
    model.save_pretrained(gdir)
    keys = on_disk_keys(gdir)
    assert "transformer.h.0.attn.c_attn.weight" in keys and "lm_head.weight" not in keys, keys
    ref = load_eager(GPT2LMHeadModel, gdir)
    convention = save_reference(ref, ids, gdir)

    ldir = fresh_dir(FIXTURES / "gpt2_legacy")
    (ldir / "config.json").write_text((gdir / "config.json").read_text())
    n = model.config.n_positions
    legacy = {k.removeprefix("transformer."): v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for i in range(model.config.n_layer):
        legacy[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
    save_file(legacy, str(ldir / "model.safetensors"), metadata={"format": "pt"})
    lref = load_eager(GPT2LMHeadModel, ldir)
    with torch.no_grad():
        torch.testing.assert_close(lref(input_ids=ids).logits, ref(input_ids=ids).logits, rtol=0, atol=0)
    save_reference(lref, ids, ldir)
    return convention


# Left padding of the cache references' second row, and the greedy tokens decoded after the prompt.
PAD = 3
DECODE_STEPS = 32


def write_cache_references() -> None:
    """`cache/{name}.safetensors` for the decoder fixtures `name`: a left-padded batch (the fixture's
    `input_ids`, row 1's first `PAD` tokens replaced by padding, id 0) with its
    `attention_mask`, the logits of one forward over it (`logits`, positions from the mask as
    `generate` computes them), then `DECODE_STEPS` greedy steps through a `DynamicCache`
    (`generated` [2, steps], `step_logits` [2, steps + 1, vocab]: the prompt's last logits, then
    each step's), as `generate(do_sample=False)` runs them without stopping at EOS."""
    cache_dir = fresh_dir(FIXTURES / "cache")
    families = ((LlamaForCausalLM, "llama"), (Qwen2MoeForCausalLM, "qwen2_moe"), (MixtralForCausalLM, "mixtral"), (GPT2LMHeadModel, "gpt2"))
    for cls, name in families:
        path = FIXTURES / name
        model = load_eager(cls, path)
        ids = input_ids(model.config.vocab_size)
        mask = torch.ones_like(ids)
        mask[1, :PAD] = 0
        padded = ids.masked_fill(mask == 0, 0)
        # `GenerationMixin._prepare_position_ids`: positions count the kept tokens.
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        with torch.no_grad():
            logits = model(input_ids=padded, attention_mask=mask, position_ids=positions).logits
            cache = DynamicCache(config=model.config)
            out = model(input_ids=padded, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
            torch.testing.assert_close(out.logits, logits, rtol=0, atol=0)
            steps, tokens = [out.logits[:, -1]], []
            step_mask, step_pos = mask, positions[:, -1:]
            for _ in range(DECODE_STEPS):
                token = steps[-1].argmax(-1, keepdim=True)
                tokens.append(token)
                step_mask = torch.cat([step_mask, torch.ones_like(token)], dim=1)
                step_pos = step_pos + 1
                out = model(input_ids=token, attention_mask=step_mask, position_ids=step_pos, past_key_values=cache, use_cache=True)
                steps.append(out.logits[:, -1])
            generated = torch.cat(tokens, dim=1)
            # The same tokens as `generate`, EOS never reached or not stopping it.
            check = model.generate(padded, attention_mask=mask, max_new_tokens=DECODE_STEPS, do_sample=False, eos_token_id=None, pad_token_id=0)
            assert torch.equal(check[:, ids.shape[1]:], generated), (check, generated)
            # With a repetition penalty (transformers' RepetitionPenaltyLogitsProcessor: the
            # prompt's and generated tokens' logits divided by it where positive, multiplied
            # where negative).
            penalized = model.generate(padded, attention_mask=mask, max_new_tokens=DECODE_STEPS, do_sample=False, repetition_penalty=1.5, eos_token_id=None, pad_token_id=0)[:, ids.shape[1]:]
        tensors = {
            "input_ids": padded.contiguous(),
            "attention_mask": mask.contiguous(),
            "logits": logits.float().contiguous(),
            "generated": generated.contiguous(),
            "generated_penalized": penalized.contiguous(),
            "step_logits": torch.stack(steps, dim=1).float().contiguous(),
        }
        save_file(tensors, str(cache_dir / f"{name}.safetensors"), metadata={"format": "pt"})
        print(f"{name}: cache reference, greedy tokens {generated.tolist()}, penalized {penalized.tolist()}")


# Every Linear of the Llama fixture, the head included (patcher-models' `llama::LINEAR_NAMES`).
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


def llama_lora_fixture() -> str:
    """`llama_lora/`: a PEFT LoRA adapter on the `llama/` fixture (r = lora_alpha = 4, every
    Linear and the head) with seeded non-zero weights, as `PeftModel.save_pretrained` writes it,
    and `reference.safetensors`: the llama fixture's `input_ids` and the logits of
    `PeftModel.from_pretrained(llama, llama_lora)`. Reads `llama/` and writes nothing else, so
    `python3 scripts/make_fixtures.py llama_lora` adds it without touching another fixture."""
    from peft import LoraConfig, PeftModel, get_peft_model

    base_dir = FIXTURES / "llama"
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=LORA_TARGETS, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"
    )
    model = get_peft_model(load_eager(LlamaForCausalLM, base_dir), config)
    gen = torch.Generator().manual_seed(20260019)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_" in name:
                param.copy_(0.15 * torch.randn(param.shape, generator=gen, dtype=torch.float32))
    adir = fresh_dir(FIXTURES / "llama_lora")
    model.save_pretrained(adir)
    (adir / "README.md").unlink(missing_ok=True)
    # PEFT records the absolute folder the base came from; the fixture names it relative to the repo.
    config_path = adir / "adapter_config.json"
    written = json.loads(config_path.read_text())
    written["base_model_name_or_path"] = "tests/fixtures/llama"
    config_path.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")

    # The reference reloads the adapter from disk, as a user would.
    reloaded = PeftModel.from_pretrained(load_eager(LlamaForCausalLM, base_dir), adir)
    reloaded.eval()
    with safe_open(str(base_dir / "reference.safetensors"), "pt") as handle:
        ids = handle.get_tensor("input_ids")
    with torch.no_grad():
        logits = reloaded(input_ids=ids).logits.float().contiguous()
        plain = load_eager(LlamaForCausalLM, base_dir)(input_ids=ids).logits
    gap = (logits - plain).abs().max().item()
    assert gap > 1e-2, f"the adapter barely changes the logits ({gap})"
    save_file({"input_ids": ids, "logits": logits}, str(adir / "reference.safetensors"), metadata={"format": "pt"})
    return f"PEFT {__import__('peft').__version__} LoRA adapter; max |logits - base logits| = {gap:.3f}"


def bert_config() -> BertConfig:
    # 2 layers, hidden 32 over 4 heads, exact GELU, a non-default layer_norm_eps.
    return BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, hidden_act="gelu", max_position_embeddings=64, type_vocab_size=2,
        layer_norm_eps=1e-5, pad_token_id=0,
    )


def bert_inputs(vocab: int) -> dict[str, torch.Tensor]:
    """input_ids, two token types per row, and a padding mask on the second row (its last two
    positions are padding, given the pad token id 0)."""
    ids = input_ids(vocab)
    mask = torch.ones(BATCH, SEQ, dtype=torch.int64)
    mask[1, SEQ - 2:] = 0
    ids[1, SEQ - 2:] = 0
    token_type_ids = torch.zeros(BATCH, SEQ, dtype=torch.int64)
    token_type_ids[0, 3:] = 1
    token_type_ids[1, 2:SEQ - 2] = 1
    return {"input_ids": ids, "token_type_ids": token_type_ids, "attention_mask": mask}


def save_bert_reference(model, inputs: dict, path: Path) -> str:
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    hs = out.hidden_states
    n = model.config.num_hidden_layers
    assert len(hs) == n + 1, len(hs)
    assert torch.equal(hs[n], out.last_hidden_state), "hidden_states[-1] is not last_hidden_state"
    tensors = {k: v.contiguous() for k, v in inputs.items()}
    tensors["last_hidden_state"] = out.last_hidden_state.float().contiguous()
    tensors["pooler_output"] = out.pooler_output.float().contiguous()
    for i, h in enumerate(hs):
        # A copy: the last one shares memory with last_hidden_state, which save_file refuses.
        tensors[f"hidden_states.{i}"] = h.float().clone().contiguous()
    save_file(tensors, str(path / "reference.safetensors"), metadata={"format": "pt"})
    return f"num_hidden_layers + 1 = {n + 1} hidden states, the embeddings' output first, the last == last_hidden_state"


def bert_fixtures() -> str:
    """`bert/`: a tiny BertModel as transformers 5 saves it (keys without prefix). `bert_legacy/`:
    the same weights as old hub checkpoints hold them (`bert.` prefix, `LayerNorm.gamma`/`.beta`,
    the `embeddings.position_ids` buffer, a `cls.` head tensor), which transformers loads to the
    same model; each with its reference."""
    bert = build(BertModel, bert_config(), seed=20260004)
    inputs = bert_inputs(bert.config.vocab_size)
    bdir = fresh_dir(FIXTURES / "bert")
    bert.save_pretrained(bdir)
    keys = on_disk_keys(bdir)
    for expected in ("encoder.layer.0.attention.self.query.bias", "embeddings.LayerNorm.weight", "pooler.dense.weight"):
        assert expected in keys, f"{expected} not on disk; keys: {keys}"
    ref = load_eager(BertModel, bdir)
    convention = save_bert_reference(ref, inputs, bdir)

    ldir = fresh_dir(FIXTURES / "bert_legacy")
    shutil.copy(bdir / "config.json", ldir / "config.json")
    legacy = {}
    with safe_open(str(bdir / "model.safetensors"), "pt") as handle:
        for key in handle.keys():
            old = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            legacy[f"bert.{old}"] = handle.get_tensor(key)
    legacy["bert.embeddings.position_ids"] = torch.arange(bert.config.max_position_embeddings).unsqueeze(0)
    legacy["cls.predictions.bias"] = torch.zeros(bert.config.vocab_size)
    save_file(legacy, str(ldir / "model.safetensors"), metadata={"format": "pt"})
    lref = load_eager(BertModel, ldir)
    with torch.no_grad():
        torch.testing.assert_close(lref(**inputs).last_hidden_state, ref(**inputs).last_hidden_state, rtol=0, atol=0)
    save_bert_reference(lref, inputs, ldir)
    return convention


# RoPE variants checked against transformers' own init functions (see patcher-models' tests).
ROPE_CASES = {
    "default": dict(head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 1000.0}),
    "linear": dict(head_dim=64, rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}),
    "llama3": dict(
        head_dim=128,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    ),
    "yarn": dict(
        head_dim=64,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 4096,
        },
    ),
}

# (num_experts, k) pairs for torch.topk's CPU tie order: both the nth_element path
# (k * 64 > n) and the partial_sort path (k * 64 <= n).
TOPK_CASES = [(4, 1), (4, 2), (8, 2), (8, 4), (60, 4), (64, 8), (128, 2), (128, 8), (256, 4), (256, 8)]


def write_op_references() -> None:
    """tests/fixtures/ops/: torch.topk on tie-heavy rows, and RoPE inverse frequencies."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    out = fresh_dir(FIXTURES / "ops")
    gen = torch.Generator().manual_seed(99)
    tensors = {}
    for n, k in TOPK_CASES:
        rows = 16
        # Few distinct values so most rows have ties at the k boundary; first row all equal.
        values = torch.randint(0, 3, (rows, n), generator=gen).float() * 0.25
        values[0] = 0.5
        values[1] = torch.softmax(torch.zeros(n), dim=-1)
        top = torch.topk(values, k, dim=-1)
        tensors[f"topk.{n}.{k}.values"] = values.contiguous()
        tensors[f"topk.{n}.{k}.indices"] = top.indices.contiguous()
    for name, case in ROPE_CASES.items():
        config = LlamaConfig(
            hidden_size=case["head_dim"] * 4,
            num_attention_heads=4,
            head_dim=case["head_dim"],
            max_position_embeddings=16384,
            rope_parameters=dict(case["rope_parameters"]),
        )
        rope_type = config.rope_parameters["rope_type"]
        if rope_type == "default":
            from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

            inv_freq, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
        else:
            inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu")
            tensors[f"rope.{name}.attention_factor"] = torch.tensor([float(attention_factor)])
        tensors[f"rope.{name}.inv_freq"] = inv_freq.float().contiguous()
    save_file(tensors, str(out / "reference.safetensors"), metadata={"format": "pt"})
    print(f"ops: {len(TOPK_CASES)} topk cases, {len(ROPE_CASES)} rope cases")


def write_conv1d_fixture() -> None:
    """tests/fixtures/conv1d/: two GPT-2 `Conv1D` layers (`transformers.pytorch_utils.Conv1D`,
    weight stored `[in, out]`, `x @ W + b`) saved with safetensors as GPT-2 names them: a
    non-square `c_attn` (8 -> 24) and a square `c_proj` (8 -> 8), whose missing transpose no
    shape can catch. The reference holds a seeded `input` [2, 3, 8] and each layer's output on
    it (`c_attn.output`, `c_proj.output`). Documented in the folder's README.md."""
    from transformers.pytorch_utils import Conv1D

    out = fresh_dir(FIXTURES / "conv1d")
    gen = torch.Generator().manual_seed(20260019)
    hidden = 8
    layers = torch.nn.ModuleDict({"c_attn": Conv1D(3 * hidden, hidden), "c_proj": Conv1D(hidden, hidden)})
    with torch.no_grad():
        for param in layers.parameters():
            # Conv1D's init leaves the bias at zero: seeded values test it too.
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    tensors = {k: v.contiguous() for k, v in layers.state_dict().items()}
    assert tensors["c_attn.weight"].shape == (hidden, 3 * hidden), tensors["c_attn.weight"].shape
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    x = torch.randn(2, 3, hidden, generator=gen)
    reference = {"input": x}
    with torch.no_grad():
        for name, layer in layers.items():
            reference[f"{name}.output"] = layer(x).contiguous()
    save_file(reference, str(out / "reference.safetensors"), metadata={"format": "pt"})
    (out / "README.md").write_text(
        "# conv1d\n\n"
        "Written by `write_conv1d_fixture` in `scripts/make_fixtures.py` (versions in\n"
        "`../VERSIONS.md`): GPT-2's `Conv1D` (`transformers.pytorch_utils.Conv1D`, weight stored\n"
        "`[in, out]`, `x @ W + b`) as `c_attn` (8 -> 24) and the square `c_proj` (8 -> 8), seeded\n"
        "weights and biases (std 0.5). `reference.safetensors`: `input` [2, 3, 8] and each layer's\n"
        "output on it, `c_attn.output` [2, 3, 24] and `c_proj.output` [2, 3, 8].\n"
    )
    print("conv1d: c_attn [8, 24], c_proj [8, 8]")


def write_versions_md(versions: dict, notes: dict, conventions: dict) -> None:
    lines = [
        "# Test fixtures",
        "",
        "Generated by `scripts/make_fixtures.py` (not needed by CI). Versions used:",
        "",
    ]
    lines += [f"- {k}: `{v}`" for k, v in versions.items()]
    lines += [
        "",
        "Reference outputs: fp32, `attn_implementation=\"eager\"`, `experts_implementation=\"eager\"`,",
        "computed from the checkpoint as saved (reloaded with `from_pretrained`). Inputs: `input_ids`",
        f"I64 [{BATCH}, {SEQ}], no padding, no attention mask, positions 0..{SEQ - 1}.",
        "",
        "## Hidden-state convention (checked with forward hooks by the script)",
        "",
        conventions["qwen2_moe"] + ".",
        "The same holds for Llama.",
        "",
        "## Directories",
        "",
        "- `qwen2_moe/`: Qwen2-MoE, 2 layers, hidden 64, 4 heads / 2 KV heads, q/k/v biases, 4 experts",
        "  top-2 (norm_topk_prob false), shared expert with sigmoid gate, vocab 128, rope_theta 1000.",
        "- `qwen2_moe_sharded/`: the same weights in several shards; layer 0's experts span two files.",
        "- `qwen2_moe_fused/`: the same weights in transformers 5's fused expert layout",
        "  (`save_pretrained(save_original_format=False)`: `mlp.experts.gate_up_proj [E, 2I, H]`,",
        "  `mlp.experts.down_proj [E, H, I]`).",
        "- `qwen2_moe_bf16/`: the same model saved in bf16; its reference is transformers' run of the",
        "  bf16 weights upcast to fp32.",
        "- `llama/`: Llama, 3 layers, hidden 64, 4 heads / 2 KV heads, head_dim 24 (!= 64/4), no",
        "  biases, untied lm_head, rms_norm_eps 1e-5, rope_theta 500.",
        "- `llama_sharded/`: the same weights in several shards; a layer's q/k/v span two files.",
        "- `llama_tied/`: Llama as `llama/` but `tie_word_embeddings: true` (other weights): the",
        "  checkpoint holds `model.embed_tokens.weight` only, which is also the LM head.",

        "- `mixtral/`: Mixtral, 2 layers, hidden 64, 4 heads / 2 KV heads, no biases, 4 experts of",
        "  width 32, top-2 (always renormalised), sliding_window 5 (shorter than the inputs),",
        "  rms_norm_eps 1e-5, rope_theta 5000, vocab 128; hub layout (`block_sparse_moe.experts.{e}.w1/",
        "  w2/w3`, `block_sparse_moe.gate`) and a hub-style config (top-level `rope_theta`,",
        "  `torch_dtype`).",
        "- `mixtral_fused/`: the same weights in transformers 5's layout (`save_original_format=False`:",
        "  `mlp.experts.gate_up_proj`, `mlp.experts.down_proj`, `mlp.gate`) with its v5 config",
        "  (`rope_parameters`, `dtype`).",
        "- `gpt2/`: GPT-2 (GPT2LMHeadModel), 2 layers, n_embd 64, 4 heads, n_inner 256, gelu_new,",
        "  64 positions, vocab 128, head tied to `transformer.wte` (no `lm_head.weight` on disk), as",
        "  transformers 5 saves it (`transformer.` keys).",
        "- `gpt2_legacy/`: the same weights as the original hub checkpoints hold them: no",
        "  `transformer.` prefix, and each block's causal-mask buffer `h.{i}.attn.bias [1, 1, 64, 64]`.",
        "- `cache/`: per decoder fixture (`llama`, `qwen2_moe`, `mixtral`, `gpt2`), the fixture's",
        "  `input_ids` with row 1 left-padded by 3 (`attention_mask`), the logits of one forward over",
        "  them (positions from the mask, as `generate` computes them), and 32 greedy steps through a",
        "  `DynamicCache`: `generated` [2, 32] and `step_logits` [2, 33, vocab] (checked against",
        "  `generate(do_sample=False)`); `generated_penalized`: the same with `repetition_penalty=1.5`.",
        "- `bert/`: BertModel, 2 layers, hidden 32, 4 heads, intermediate 64, exact GELU, vocab 100,",
        "  2 token types, 64 positions, layer_norm_eps 1e-5, as transformers 5 saves it (no prefix).",
        "  Its reference holds `input_ids`, `token_type_ids` and `attention_mask` (the second row's",
        "  last two positions are padding), `last_hidden_state`, `pooler_output` and",
        f"  `hidden_states.{{i}}` ({conventions['bert']}).",
        "- `bert_legacy/`: the same weights as old hub checkpoints hold them: `bert.` prefix,",
        "  `LayerNorm.gamma`/`LayerNorm.beta`, the `bert.embeddings.position_ids` buffer and a",
        "  `cls.predictions.bias` head tensor; transformers loads it to the same model.",
        "- `ops/reference.safetensors`: `torch.topk` (CPU) on tie-heavy rows (`topk.{n}.{k}.values`",
        "  / `.indices`) and RoPE inverse frequencies from transformers' init functions",
        "  (`rope.{default,linear,llama3,yarn}.inv_freq`, and `.attention_factor` but for default;",
        "  parameters in the script's `ROPE_CASES`).",
        "",
        f"Smallest margin between the 2nd and 3rd router logit over all tokens and layers: "
        f"{notes['qwen2_moe_min_topk_logit_margin']:.4g} (f32), {notes['qwen2_moe_bf16_min_topk_logit_margin']:.4g} (bf16),",
        f"{notes['mixtral_min_topk_logit_margin']:.4g} (Mixtral),",
        "so top-k selection is stable under float noise.",
        "",
        *make_tokenizers.VERSIONS_MD.splitlines(),
        "",
    ]
    (FIXTURES / "VERSIONS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:] == ["llama_lora"]:
        print(llama_lora_fixture())
    elif sys.argv[1:] == ["cache"]:
        torch.use_deterministic_algorithms(True)
        write_cache_references()
        make_tokenizers.main()
    elif sys.argv[1:] == ["gpt2"]:
        torch.use_deterministic_algorithms(True)
        print(gpt2_fixtures())
        write_cache_references()
        make_tokenizers.main()
    else:
        sys.exit(main())
