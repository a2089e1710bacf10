#!/usr/bin/env python3
"""Time transformers' eager prefill forward of a Qwen2-MoE checkpoint on CPU.

    python3 scripts/bench_transformers_forward.py DIR [--threads N] [--rounds N] [--shapes 1x128,4x512]

transformers' side of `cargo run --release --example forward_benchmark`. `DIR` holds
`config.json` and `model.safetensors` (the load benchmark's generated checkpoint). The model is
loaded with `attn_implementation="eager"` and `experts_implementation="eager"`, in float32, with
`torch.set_num_threads(N)`; each shape runs one warm-up forward, then `--rounds` timed forwards
under `torch.inference_mode()` with the same deterministic token ids as the Rust side (SplitMix64
seeded 0x1d5, modulo the vocabulary); the median is reported.

Output: readable lines, then one `RESULT shape=BxS seconds=<median s>` line per shape.
Exits with status 3 (and prints `skipped (no transformers)`) when torch or transformers cannot be
imported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

MASK = (1 << 64) - 1


def splitmix(seed: int):
    """The benchmark's SplitMix64 stream (examples/bench/checkpoint.rs)."""
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default="1x128,4x512")
    args = parser.parse_args()
    try:
        import torch
        import transformers
        from transformers import Qwen2MoeForCausalLM
    except ImportError as error:
        print(f"skipped (no transformers): {error}")
        return 3

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    model = Qwen2MoeForCausalLM.from_pretrained(
        args.dir,
        dtype=torch.float32,
        attn_implementation="eager",
        experts_implementation="eager",
    )
    model.eval()
    vocab = model.config.vocab_size
    print(
        f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads"
    )
    for shape in args.shapes.split(","):
        batch, tokens = (int(x) for x in shape.split("x"))
        rng = splitmix(0x1D5)
        ids = [next(rng) % vocab for _ in range(batch * tokens)]
        input_ids = torch.tensor(ids, dtype=torch.long).reshape(batch, tokens)
        times = []
        with torch.inference_mode():
            model(input_ids=input_ids, use_cache=False)
            for _ in range(args.rounds):
                start = time.perf_counter()
                model(input_ids=input_ids, use_cache=False)
                times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        print(f"{shape}: {seconds:.3f} s, {batch * tokens / seconds:.0f} tokens/s")
        print(f"RESULT shape={shape} seconds={seconds:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
