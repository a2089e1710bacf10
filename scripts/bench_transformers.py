#!/usr/bin/env python3
"""Time transformers loading a Qwen2-MoE checkpoint on CPU, and the resident memory it adds.

    python3 scripts/bench_transformers.py DIR

`DIR` holds `config.json` and `model.safetensors` (e.g. the checkpoint that
`cargo run --release --example load_benchmark` generates under `target/bench-checkpoint/`).
The timed call is `Qwen2MoeForCausalLM.from_pretrained(DIR, dtype=torch.float32)`, which merges
the checkpoint's per-expert linears into the fused `gate_up_proj`/`down_proj` parameters as it
loads (transformers 5's conversion table for `qwen2_moe`).

Memory: torch and transformers are imported first; then the peak resident set is reset
(`/proc/self/clear_refs`, where the kernel allows it) and `VmRSS` is read just before the call;
the peak added is `VmHWM` after the call minus that baseline.

Output: a few readable lines, then one machine-readable line
`RESULT seconds=<s> rss_added=<bytes> rss_kept=<bytes> checksum=<sum> count=<elements>`
where `checksum` is the float64 sum of every parameter (independent of layout, so it matches the
checkpoint's sum whatever merging or fusing happened) and `count` their number of elements.
Exits with status 3 (and prints `skipped (no transformers)`) when torch or transformers cannot be
imported.
"""

from __future__ import annotations

import sys
import time


def status_kib(field: str) -> int:
    """A `/proc/self/status` field in KiB (e.g. `VmRSS`, `VmHWM`)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Resets VmHWM to the current resident set (Linux >= 4.0); best effort."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    directory = sys.argv[1]
    try:
        import torch
        import transformers
        from transformers import Qwen2MoeForCausalLM
    except ImportError as error:
        print(f"skipped (no transformers): {error}")
        return 3

    # The "Loading weights" bar would interleave with the benchmark's table.
    transformers.utils.logging.disable_progress_bar()
    reset_peak()
    baseline = status_kib("VmRSS")
    start = time.perf_counter()
    model = Qwen2MoeForCausalLM.from_pretrained(directory, dtype=torch.float32)
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    kept = status_kib("VmRSS")

    with torch.no_grad():
        params = list(model.parameters())
        checksum = sum(p.detach().double().sum().item() for p in params)
        count = sum(p.numel() for p in params)
    experts = type(model.model.layers[0].mlp.experts).__name__

    print(
        f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads; experts class {experts}"
    )
    print(
        f"from_pretrained: {seconds:.3f} s, peak RSS added {(peak - baseline) / 1024:.1f} MiB, "
        f"kept {(kept - baseline) / 1024:.1f} MiB"
    )
    print(
        f"RESULT seconds={seconds:.6f} rss_added={(peak - baseline) * 1024} "
        f"rss_kept={(kept - baseline) * 1024} checksum={checksum:.17g} count={count}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
