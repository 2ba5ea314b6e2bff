"""Benchmark: decode and prefill speed with and without one competing CPU-bound process, under the thread
policy localai uses now and the one it used before (localai/backends/threads.py).

    .venv/bin/python benchmarks/decode_under_load.py [--workdir /tmp/localai-bench] [-p 512] [-n 128] [-r 5]

Packages: the demo model as GGUF q8_0 and ONNX int4, and the ~250M Nemotron-H of benchmarks/convert_gguf.py
as GGUF q4_k_m and ONNX int4, converted afresh into --workdir.
Policies: "now" is the default (llama.cpp: as many threads as the cores other processes leave free,
re-measured per call; ONNX Runtime: every physical core, workers spinning only while the machine is
idle on graphs of up to 512 MB, else sleeping instead of spinning); "before"
is what localai did until 2026-12-01 (every physical core, fixed; ONNX Runtime's workers spinning).

Each measurement is `localai bench`'s (localai.bench.measure: a warm-up, then one pp and one tg run) in a
fresh process. Every repetition measures every package and policy idle, then again while one busy-loop
process runs (it stops by itself after --busy-limit seconds in any case), the two policies taking turns
to go first, so that drift on this shared machine falls on both sides alike; the tables give medians
over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from convert_gguf import CONFIG, build_checkpoint

from converters import convert
from localai.backends.threads import physical_cores
from localai.cli.demo import checkpoint as demo_checkpoint

POLICIES = ("before", "now")
CHILD = """
import json
from localai.backends import threads
from localai.backends.threads import physical_cores
from localai.bench import BenchSettings, measure
before = {before}
if before:
    threads.ONNX_RUNTIME_SPINNING = "always"
settings = BenchSettings(n_prompt={n_prompt}, n_gen={n_gen}, repetitions=1,
                         threads=physical_cores() if before else None)
print(json.dumps([row.to_dict() for row in measure({package!r}, settings)]))
"""
BUSY = "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"


def packages(workdir: Path) -> dict[str, Path]:
    """label -> package folder, converted afresh (this checkout's graphs)."""
    src = workdir / "nemotron-h-250m-bf16"
    if not (src / "model.safetensors").is_file():
        print(f"building checkpoint: {build_checkpoint(src, CONFIG) / 1e6:.0f}M parameters", file=sys.stderr)
    found = {}
    for label, source, to, quant in (("demo q8_0", demo_checkpoint(), "gguf", "q8_0"),
                                     ("demo onnx int4", demo_checkpoint(), "onnx", "int4"),
                                     ("250M q4_k_m", src, "gguf", "q4_k_m"), ("250M onnx int4", src, "onnx", "int4")):
        name = f"under-load-{label.lower().replace(' ', '-')}"
        convert(str(source), to=to, quant=quant, output=workdir / name, name=name, force=True)
        found[label] = workdir / name
    return found


def one_run(package: Path, policy: str, n_prompt: int, n_gen: int) -> dict[str, dict]:
    code = CHILD.format(before=policy == "before", n_prompt=n_prompt, n_gen=n_gen, package=str(package))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return {row["test"][:2]: row for row in json.loads(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("-r", type=int, default=5)
    parser.add_argument("--busy-limit", type=float, default=1800.0)
    args = parser.parse_args()
    found = packages(args.workdir)
    runs: dict[tuple[str, str, str], list[dict[str, dict]]] = {}
    busy_loop = [sys.executable, "-c", BUSY.format(limit=args.busy_limit)]
    for rep in range(args.r):
        for load in ("idle", "load"):
            busy = None if load == "idle" else subprocess.Popen(busy_loop)
            try:
                for label, folder in found.items():
                    for policy in POLICIES[:: 1 if rep % 2 else -1]:  # alternate who goes first
                        runs.setdefault((label, policy, load), []).append(one_run(folder, policy, args.p, args.n))
            finally:
                if busy:
                    busy.kill()
                    busy.wait()
        print(f"repetition {rep + 1}/{args.r} done", file=sys.stderr)
    report(runs, found, args)


def median(runs: list[dict[str, dict]], test: str) -> float:
    return statistics.median(r[test]["tokens_per_s"] for r in runs)


def report(runs: dict[tuple[str, str, str], list[dict[str, dict]]], found: dict[str, Path],
           args: argparse.Namespace) -> None:
    print(f"{platform.processor() or platform.machine()}, {physical_cores()} physical cores, Python "
          f"{platform.python_version()}; pp{args.p} / tg{args.n}, medians of {args.r} repetitions\n")
    print("| package | policy | threads | tg idle t/s | tg under load t/s | load / idle | pp idle t/s | "
          "pp under load t/s | load / idle |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for label in found:
        for policy in POLICIES:
            idle, load = runs[(label, policy, "idle")], runs[(label, policy, "load")]
            tg_i, tg_l, pp_i, pp_l = median(idle, "tg"), median(load, "tg"), median(idle, "pp"), median(load, "pp")
            print(f"| {label} | {policy} | {idle[0]['tg']['thread_policy']} | {tg_i:.1f} | {tg_l:.1f} | "
                  f"x{tg_l / tg_i:.2f} | {pp_i:.0f} | {pp_l:.0f} | x{pp_l / pp_i:.2f} |")
    print()
    for label in found:
        now, before = runs[(label, "now", "idle")], runs[(label, "before", "idle")]
        print(f"- {label}, idle, now / before: tg x{median(now, 'tg') / median(before, 'tg'):.3f}, "
              f"pp x{median(now, 'pp') / median(before, 'pp'):.3f}")


if __name__ == "__main__":
    main()
