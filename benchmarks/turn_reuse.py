"""Benchmark: time to first token per turn of a 20-turn chat, with and without turn-state reuse.

    .venv/bin/python benchmarks/turn_reuse.py [--package DIR] [--turns 20] [--threads 2]

Default model: the ~250M-parameter Nemotron-H of benchmarks/convert_gguf.py as GGUF f16 (converted on
first use in --workdir). Short user messages, greedy answers of 24 tokens without thinking; the same
conversation runs twice in this process, once with `turn_snapshots=0` (every turn re-reads the whole
conversation) and once with the default.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from convert_gguf import CONFIG, build_checkpoint

import localai
from localai.conversation import Conversation
from localai.events import collect
from localai.model import resolve

SETTINGS = {"temperature": 0.0, "max_tokens": 24, "think": False}


def ttfts(package: Path, turns: int, threads: int, snapshots: int) -> list[tuple[float, int, int]]:
    """(TTFT ms, prompt tokens, reused tokens) of every turn."""
    model = localai.load(package, n_ctx=4096, n_threads=threads, turn_snapshots=snapshots)
    chat = Conversation(model, model.defaults.changed(**SETTINGS),
                        system="You are a helpful assistant. Answer briefly.")
    rows = []
    for turn in range(turns):
        final = collect(chat.send(f"Question {turn + 1}: what comes after {turn * 7} in the sequence?"))
        rows.append((final.timings.ttft_ms or 0.0, final.usage.prompt_tokens, final.cached_tokens))
    model.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, help="model package (default: the 250M Nemotron-H, GGUF f16)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    package = args.package
    if package is None:
        from converters import convert

        src, package = args.workdir / "nemotron-h-250m-bf16", args.workdir / "turns-gguf-f16"
        if not (src / "model.safetensors").is_file():
            print(f"building checkpoint: {build_checkpoint(src, CONFIG) / 1e6:.0f}M parameters", file=sys.stderr)
        if not package.is_dir():
            convert(str(src), quant="f16", output=package)
    without = ttfts(package, args.turns, args.threads, 0)
    with_reuse = ttfts(package, args.turns, args.threads, 2)
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"Python {platform.python_version()}; {resolve(package).manifest.name}; {args.turns} turns")
    print("| turn | prompt tokens | TTFT without reuse (ms) | TTFT with reuse (ms) | reused tokens |")
    print("|---|---|---|---|---|")
    for turn, (plain, reused) in enumerate(zip(without, with_reuse, strict=True), 1):
        print(f"| {turn} | {plain[1]} | {plain[0]:.0f} | {reused[0]:.0f} | {reused[2]} |")
    last, second = with_reuse[-1][0], with_reuse[1][0]
    print(f"with reuse: TTFT turn {args.turns} / turn 2 = x{last / second:.2f}; without: "
          f"x{without[-1][0] / without[1][0]:.2f}")


if __name__ == "__main__":
    main()
