"""Benchmark: a ~250M-parameter Nemotron-H on ONNX Runtime (fp32, int4) next to llama.cpp (f16, q4_k_m).

    .venv/bin/python benchmarks/onnx_runtime.py [--threads 2] [--prompt 512] [--decode 128] [--repeat 3]

Uses the bf16 checkpoint of benchmarks/convert_gguf.py (built on first use in --workdir), converts it
four ways, measuring each conversion's wall time and peak RSS in a fresh process, then times prefill
(one call on --prompt tokens) and decode (--decode calls of one token) of each package in this process,
alternating packages between repeats; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from convert_gguf import CONFIG, build_checkpoint, measure

import localai

PACKAGES = [("onnx", "fp32"), ("onnx", "int4"), ("gguf", "f16"), ("gguf", "q4_k_m")]
CONVERT = """
from pathlib import Path
from converters import convert
convert({src!r}, to={to!r}, quant={quant!r}, output=Path({out!r}), name="bench-{to}-{quant}")
"""


def speed(package: Path, threads: int, prompt: list[int], decode: int) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s) of one run."""
    model = localai.load(package, n_ctx=len(prompt) + decode + 16, n_threads=threads)
    backend = model.backend
    backend.eval(prompt[:8])  # first-call set-up is not what is measured
    backend.reset()
    start = time.perf_counter()
    logits = backend.eval(prompt)
    prefilled = time.perf_counter()
    for _ in range(decode):
        logits = backend.eval([int(np.argmax(logits))])
    done = time.perf_counter()
    model.close()
    return len(prompt) / (prefilled - start), decode / (done - prefilled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--decode", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    src = args.workdir / "nemotron-h-250m-bf16"
    if not (src / "model.safetensors").is_file():
        print(f"building checkpoint: {build_checkpoint(src, CONFIG) / 1e6:.0f}M parameters", file=sys.stderr)

    converted: dict[tuple[str, str], tuple[Path, float, float]] = {}
    for to, quant in PACKAGES:
        out = args.workdir / f"bench-{to}-{quant}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        seconds, rss = measure(CONVERT.format(src=str(src), to=to, quant=quant, out=str(out)))
        converted[(to, quant)] = (out, seconds, rss)

    prompt = np.random.default_rng(0).integers(0, 500, args.prompt).tolist()
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in PACKAGES}
    for _ in range(args.repeat):
        for key in PACKAGES:
            runs[key].append(speed(converted[key][0], args.threads, prompt, args.decode))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads, "
          f"Python {platform.python_version()}; prompt {args.prompt} tokens, {args.decode} decoded; "
          f"medians of {args.repeat} runs")
    print("| package | convert (s) | convert peak RSS (MB) | size (MB) | prefill (tok/s) | decode (tok/s) |")
    print("|---|---|---|---|---|---|")
    medians = {}
    for key in PACKAGES:
        out, seconds, rss = converted[key]
        size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
        medians[key] = (statistics.median(r[0] for r in runs[key]), statistics.median(r[1] for r in runs[key]))
        print(f"| {key[0]} {key[1]} | {seconds:.1f} | {rss:.0f} | {size:.0f} | {medians[key][0]:.0f} | "
              f"{medians[key][1]:.1f} |")
    for onnx, gguf in ((("onnx", "fp32"), ("gguf", "f16")), (("onnx", "int4"), ("gguf", "q4_k_m"))):
        print(f"{onnx[1]} vs llama.cpp {gguf[1]}: prefill x{medians[onnx][0] / medians[gguf][0]:.2f}, "
              f"decode x{medians[onnx][1] / medians[gguf][1]:.2f}")


if __name__ == "__main__":
    main()
