#!/usr/bin/env python3
"""Time llama.cpp's prompt processing and decoding of a checkpoint on CPU.

    python3 scripts/bench_llamacpp.py DIR LLAMA_CPP [--threads N] [--prompt 128] [--new 128]
        [--outtype f32] [--work DIR]

llama.cpp's side of `cargo run --release --example decode_benchmark -- --llama-cpp LLAMA_CPP`.
LLAMA_CPP is a llama.cpp source tree with `llama-bench` built in `build/bin/` (for example the
one vendored in the `llama-cpp-python` sdist from PyPI:

    tar xzf llama_cpp_python-*.tar.gz && cd llama_cpp_python-*/vendor/llama.cpp
    cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
    cmake --build build --target llama-bench -j

). DIR (a transformers checkpoint) is read, never written: its `convert_hf_to_gguf.py` writes
the GGUF (`--outtype`, default f32) into a temporary folder removed at the end (or into
`--work`, created if needed, kept, and reused when it already holds the GGUF). A checkpoint without a tokenizer (the generated
benchmark checkpoint) gets a placeholder vocabulary of `vocab_size` tokens: `llama-bench` feeds
token ids, so no text is ever tokenized. Then `llama-bench -p PROMPT -n NEW -t THREADS -r 3`:
prompt processing and generation of one sequence, each the mean of 3 repetitions.

Output: readable lines, then `RESULT prefill_tps=<tokens/s> decode_tps=<tokens/s>`. Exits with
status 3 (and prints `skipped (...)`) when LLAMA_CPP has no built `llama-bench` or its
converter cannot run (no torch).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def placeholder_vocab(model) -> None:
    """`set_vocab` for a checkpoint without a tokenizer: `vocab_size` plain tokens (sentencepiece
    style, ids 0/1/2 as unk/bos/eos), enough for llama.cpp to load the model and feed ids."""
    import gguf

    n = model.hparams["vocab_size"]
    writer = model.gguf_writer
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([f"<t{i}>" for i in range(n)])
    writer.add_token_scores([0.0] * n)
    writer.add_token_types([gguf.TokenType.NORMAL] * n)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)


def convert(checkpoint: Path, llama_cpp: Path, out: Path, outtype: str) -> None:
    """`convert_hf_to_gguf.py checkpoint --outfile out --outtype outtype`, in this process (so a
    checkpoint without a tokenizer can get the placeholder vocabulary)."""
    sys.path.insert(0, str(llama_cpp))
    sys.path.insert(1, str(llama_cpp / "gguf-py"))
    import convert_hf_to_gguf
    from conversion import get_model_class

    if not (checkpoint / "tokenizer.json").exists():
        arch = json.loads((checkpoint / "config.json").read_text())["architectures"][0]
        get_model_class(arch).set_vocab = placeholder_vocab
    sys.argv = ["convert_hf_to_gguf.py", str(checkpoint), "--outfile", str(out), "--outtype", outtype]
    convert_hf_to_gguf.main()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("llama_cpp")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--outtype", default="f32")
    parser.add_argument("--work")
    args = parser.parse_args()
    llama_cpp = Path(args.llama_cpp).resolve()
    bench = llama_cpp / "build" / "bin" / "llama-bench"
    if not bench.exists():
        print(f"skipped (no {bench}: build llama.cpp first, see the script's help)")
        return 3
    try:
        import torch  # noqa: F401 - the converter needs it
    except ImportError as error:
        print(f"skipped (llama.cpp's converter needs torch: {error})")
        return 3

    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        return run(args, llama_cpp, bench, work)
    # A temporary GGUF (as large as the checkpoint) is removed at the end.
    with tempfile.TemporaryDirectory(prefix="bench-llamacpp-") as work:
        return run(args, llama_cpp, bench, Path(work))


def run(args, llama_cpp: Path, bench: Path, work: Path) -> int:
    gguf_file = work / f"model-{args.outtype}.gguf"
    if not gguf_file.exists():
        # A child process: the converter's imports and logging stay out of this one.
        code = subprocess.run(
            [sys.executable, __file__, "--convert-only", args.dir, str(llama_cpp), str(gguf_file), args.outtype],
            stdout=sys.stderr,
        ).returncode
        if code != 0:
            print(f"convert_hf_to_gguf.py failed with status {code}")
            return 1
    command = [str(bench), "-m", str(gguf_file), "-p", str(args.prompt), "-n", str(args.new), "-t", str(args.threads), "-r", "3", "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"llama-bench failed: {done.stderr.strip().splitlines()[-1:]}")
        return 1
    rows = json.loads(done.stdout)
    prefill = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0)
    decode = next(r["avg_ts"] for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0)
    build = rows[0].get("build_commit", "?")
    print(f"llama.cpp {build}, {args.outtype}, {args.threads} threads: prompt {prefill:.1f} tokens/s, decode {decode:.1f} tokens/s")
    print(f"RESULT prefill_tps={prefill:.3f} decode_tps={decode:.3f}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--convert-only"]:
        _, _, checkpoint, llama_cpp, out, outtype = sys.argv
        convert(Path(checkpoint), Path(llama_cpp), Path(out), outtype)
        sys.exit(0)
    sys.exit(main())
