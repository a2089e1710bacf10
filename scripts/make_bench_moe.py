#!/usr/bin/env python3
"""Write a benchmark checkpoint shaped like a released MoE model, made by transformers.

    python3 scripts/make_bench_moe.py OUT [--layers 2] [--seed 0]

Qwen1.5-MoE-A2.7B's widths, vocabulary and routing (hidden 2048, 16 heads, 151,936 tokens, 60
experts of 1408 with 4 per token, a shared expert of 5632, `norm_topk_prob: false`) with fewer
layers (`--layers`, default 2: about 7 GB in f32) so it fits a small machine; random weights
(std 0.02, seeded), saved by `save_pretrained` in f32 with transformers' own layout on disk. For
the benchmarks' `--dir` (they read it, never write it); not a test fixture, never committed.
OUT must not exist.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        print(f"{out} exists: give a new folder", file=sys.stderr)
        return 2

    import torch
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    config = Qwen2MoeConfig(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=5632,
        moe_intermediate_size=1408,
        shared_expert_intermediate_size=5632,
        num_hidden_layers=args.layers,
        num_attention_heads=16,
        num_key_value_heads=16,
        num_experts=60,
        num_experts_per_tok=4,
        norm_topk_prob=False,
        max_position_embeddings=8192,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=151643,
        eos_token_id=151643,
    )
    torch.manual_seed(args.seed)
    config.initializer_range = 0.02
    model = Qwen2MoeForCausalLM(config).to(torch.float32)
    model.save_pretrained(out, max_shard_size="2GB")
    total = sum(p.numel() for p in model.parameters())
    print(f"{out}: {args.layers} layers, {total / 1e9:.2f} G parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
