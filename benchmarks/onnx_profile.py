"""Benchmark: where an ONNX package's decode time goes per token, from ONNX Runtime's profiler.

    .venv/bin/python benchmarks/onnx_profile.py PACKAGE [PACKAGE ...] [-p 64] [-n 64] [--threads N]

Each package is loaded through localai (its backend and binding; workers that sleep, not spin) with ONNX Runtime's
profiling on; a prompt of -p random tokens is processed, then -n tokens are decoded one call at a
time (greedy). The decode calls' operator times are grouped by the part of the model whose nodes they
are (the graph builder names every node after its block: attention, mamba2, mlp, moe, head; the rest,
norms, residual adds and embedding, is "norms + residual"), and what is left of each call is split into
ONNX Runtime's own overhead (a run's time minus its operators') and the time outside the session
(binding inputs, reading logits, choosing the token). Nodes that ONNX Runtime's optimizer made by
fusing others carry the name it gave them; they are counted as "fused by ONNX Runtime". The profiler
itself costs time per operator, so totals are above unprofiled decode times: compare shares and rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

import localai
from localai.backends import threads as thread_policy

PARTS = ("attention", "mamba2", "mlp", "moe", "head")
OP_ROW = "op: "  # rows of the second table: time per operator type, whatever the part


class ProfilingOptions(ort.SessionOptions):
    """SessionOptions with the profiler on, writing into one folder (this script's, never the package's)."""

    folder = Path(tempfile.mkdtemp(prefix="localai-profile-"))

    def __init__(self) -> None:
        super().__init__()
        self.enable_profiling = True
        self.profile_file_prefix = str(self.folder / "ort")


def part_of(node: str) -> str:
    """The model part of a profiled node name ("node.mamba2/mul_12_kernel_time" -> "mamba2")."""
    if not node.startswith("node."):
        return "fused by ONNX Runtime"
    scope = node[len("node."):].split("/", 1)
    return scope[0] if len(scope) > 1 and scope[0] in PARTS else "norms + residual"


def profile(package: str, n_prompt: int, n_decode: int, threads: int | None) -> dict[str, float]:
    """µs per decoded token of each part, ONNX Runtime's overhead and the time outside the session."""
    ort.SessionOptions = ProfilingOptions  # type: ignore[misc]  # localai's backend creates the session
    # one session whose workers sleep, as in the tables so far (small graphs get a second, spinning one)
    thread_policy.ONNX_RUNTIME_SPINNING = "never"
    model = localai.load(package, n_ctx=n_prompt + n_decode + 8, n_threads=threads)
    backend = model.backend
    prompt = np.random.default_rng(0).integers(0, backend.n_vocab, n_prompt).tolist()
    logits = backend.eval(prompt)
    started = time.perf_counter()
    for _ in range(n_decode):
        logits = backend.eval([int(np.argmax(logits))])
    wall_us = (time.perf_counter() - started) * 1e6
    trace = json.loads(Path(backend._runs[0].session.end_profiling()).read_text())
    model.close()
    runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"][-n_decode:]
    first = runs[0]["ts"]
    # an If node's time includes its branch's nodes, which are counted themselves
    nodes = [e for e in trace if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first
             and e.get("args", {}).get("op_name") not in ("If", "Loop")]
    per_part: dict[str, float] = defaultdict(float)
    for event in nodes:
        part = part_of(event["name"].removesuffix("_kernel_time"))
        per_part[part] += event["dur"]
        per_part[f"{OP_ROW}{event['args']['op_name']}"] += event["dur"]
    in_runs = sum(r["dur"] for r in runs)
    result = {part: total / n_decode for part, total in per_part.items()}
    operators = sum(v for k, v in per_part.items() if not k.startswith(OP_ROW))
    result["ONNX Runtime overhead"] = (in_runs - operators) / n_decode
    result["outside the session"] = (wall_us - in_runs) / n_decode
    result["operators per token"] = len(nodes) / n_decode
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+")
    parser.add_argument("-p", type=int, default=64)
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument("--threads", type=int)
    parser.add_argument("-r", type=int, default=3, help="repetitions (medians are shown)")
    args = parser.parse_args()
    results = {p: [profile(p, args.p, args.n, args.threads) for _ in range(args.r)] for p in args.packages}
    names = [Path(p).name for p in args.packages]
    print(f"µs per decoded token (medians of {args.r}); -p {args.p} -n {args.n}\n")
    keys = {k for runs in results.values() for run in runs for k in run}
    parts = sorted((k for k in keys if not k.startswith(OP_ROW) and k != "operators per token"),
                   key=lambda k: (k not in PARTS, PARTS.index(k) if k in PARTS else 0, k))
    table(results, args.packages, names, "part", [*parts, "operators per token"])
    totals = [statistics.median(sum(run[k] for k in parts if k in run) for run in results[p]) for p in args.packages]
    print("| **total** | " + " | ".join(f"**{t:.0f}**" for t in totals) + " |\n")
    ops = sorted((k for k in keys if k.startswith(OP_ROW)),
                 key=lambda k: -max(statistics.median(r.get(k, 0.0) for r in results[p]) for p in args.packages))
    table(results, args.packages, names, "operator type", ops[:12])


def table(results: dict[str, list[dict[str, float]]], packages: list[str], names: list[str], title: str,
          rows: list[str]) -> None:
    print(f"| {title} | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for row in rows:
        cells = [statistics.median(run.get(row, 0.0) for run in results[p]) for p in packages]
        print(f"| {row.removeprefix(OP_ROW)} | " + " | ".join(f"{c:.0f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
