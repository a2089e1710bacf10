#!/usr/bin/env python3
"""Time transformers' greedy `generate` (prefill and decode apart) of a causal-LM checkpoint on CPU.

    python3 scripts/bench_transformers_generate.py DIR [--threads N] [--prompt 128] [--new 128]
        [--batches 1,4] [--rounds N]

transformers' side of `cargo run --release --example decode_benchmark`. DIR is read, never
written. The model is loaded with `AutoModelForCausalLM`, `attn_implementation="eager"` and
`experts_implementation="eager"`, in float32, with `torch.set_num_threads(N)`; the prompt is the
Rust side's deterministic ids (SplitMix64 seeded 0x1d5, modulo the vocabulary), `generate` runs
with a `DynamicCache`, `do_sample=False` and exactly `--new` tokens (no EOS stop). A streamer
timestamps each token: the prefill is the time to the first new token, the decode the time of
the others. One warm-up, then `--rounds` timed runs; the medians are reported.

Output: readable lines, then one `RESULT batch=B prefill=<s> decode=<s> tokens=<first row's
new ids, comma-separated>` line per batch size. Exits with status 3 (and prints `skipped (no
transformers)`) when torch or transformers cannot be imported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench_transformers_forward import splitmix


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
        from transformers.generation.streamers import BaseStreamer
    except ImportError as error:
        print(f"skipped (no transformers): {error}")
        return 3

    class Clock(BaseStreamer):
        """The time of each `put`: the prompt's first, then each new token's."""

        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(
        args.dir, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    )
    model.eval()
    vocab = model.config.vocab_size
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch threads")
    for batch in (int(b) for b in args.batches.split(",")):
        rng = splitmix(0x1D5)
        ids = torch.tensor([next(rng) % vocab for _ in range(batch * args.prompt)], dtype=torch.long)
        ids = ids.reshape(batch, args.prompt)
        prefills, decodes = [], []
        for round in range(args.rounds + 1):
            clock = Clock()
            with torch.inference_mode():
                start = time.perf_counter()
                out = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=args.new,
                    min_new_tokens=args.new,
                    do_sample=False,
                    eos_token_id=None,
                    pad_token_id=0,
                    streamer=clock,
                )
                end = time.perf_counter()
            if round == 0:
                continue  # warm-up
            first = clock.times[1]
            prefills.append(first - start)
            decodes.append(end - first)
        prefill, decode = statistics.median(prefills), statistics.median(decodes)
        tokens = out[0, args.prompt :].tolist()
        print(f"batch {batch}: prefill {prefill:.3f} s, decode {decode:.3f} s ({batch * (args.new - 1) / decode:.1f} tokens/s)")
        print(f"RESULT batch={batch} prefill={prefill:.6f} decode={decode:.6f} tokens={','.join(map(str, tokens))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
