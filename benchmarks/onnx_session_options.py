"""Benchmark: ONNX Runtime's graph optimisation levels on localai's graphs, decode and prefill.

    .venv/bin/python benchmarks/onnx_session_options.py PACKAGE [PACKAGE ...] [-r 20] [-n 64] [-p 64]

Each package is loaded once per level (localai's backend, binding and thread policy; only the level of
its sessions differs), all in one process. Then -r rounds, the order reversed every other round, each
decoding -n tokens one call at a time (greedy) after a -p token prompt on every model in turn. Paired
within rounds, so the drift of this shared machine falls on all levels alike: the table gives each
level's median ms per token and the median of its per-round ratio to "all" (localai's setting).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import localai
from localai.backends.base import Backend

LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def load(package: str, level: str, n_ctx: int) -> Backend:
    """The package's backend with sessions at `level` (localai's backend creates the sessions)."""
    class Options(ort.SessionOptions):
        def __init__(self) -> None:
            super().__init__()
            self.graph_optimization_level = LEVELS[level]

    plain, ort.SessionOptions = ort.SessionOptions, Options  # type: ignore[misc]
    try:
        return localai.load(package, n_ctx=n_ctx).backend
    finally:
        ort.SessionOptions = plain  # type: ignore[misc]


def decode_ms(backend: Backend, prompt: list[int], n: int) -> tuple[float, float]:
    """(prefill ms per prompt token, decode ms per token) of one prompt and `n` greedy steps."""
    backend.reset()
    started = time.perf_counter()
    logits = backend.eval(prompt)
    prefill = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(n):
        logits = backend.eval([int(np.argmax(logits))])
    return prefill * 1e3 / len(prompt), (time.perf_counter() - started) * 1e3 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+")
    parser.add_argument("-r", type=int, default=20, help="rounds")
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument("-p", type=int, default=64)
    args = parser.parse_args()
    models = {(Path(p).name, level): load(p, level, args.p + args.n + 8) for p in args.packages for level in LEVELS}
    prompt = np.random.default_rng(0).integers(0, min(b.n_vocab for b in models.values()), args.p).tolist()
    times: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in models}
    for round_ in range(args.r):
        for key in list(models)[:: 1 if round_ % 2 == 0 else -1]:
            times[key].append(decode_ms(models[key], prompt, args.n))
    print(f"{args.r} rounds, -p {args.p} -n {args.n}; medians\n")
    print("| package | level | prefill ms/token | decode ms/token | prefill time / all's | decode time / all's |")
    print("|---|---|---:|---:|---:|---:|")
    for name, level in models:
        rows, base = times[(name, level)], times[(name, "all")]
        ratios = [statistics.median(r[i] / b[i] for r, b in zip(rows, base, strict=True)) for i in (0, 1)]
        print(f"| {name} | {level} | {statistics.median(r[0] for r in rows):.3f} | "
              f"{statistics.median(r[1] for r in rows):.3f} | x{ratios[0]:.2f} | x{ratios[1]:.2f} |")


if __name__ == "__main__":
    main()
