"""The demo model's accuracy against its reasoning budget (the table in docs/demo.md).

    .venv/bin/python benchmarks/demo_sweep.py [--n 200] [--to gguf] [--quant q8_0] [--budgets 0,16,32,...,unlimited]

Converts the bundled checkpoint (once, into the store) and asks it the held-out problems of the
arithmetic task greedily for each budget; budget 0 is thinking off.
"""

from __future__ import annotations

import argparse
import platform

import localai
from localai.cli.demo import ensure_package
from localai.tasks import arithmetic
from localai.tasks.runner import score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--to", default="gguf", help="package format: gguf or onnx")
    parser.add_argument("--quant", default="q8_0")
    parser.add_argument("--budgets", default="0,16,32,48,64,80,96,112,128,unlimited")
    args = parser.parse_args()
    model = localai.load(ensure_package(args.quant, args.to))
    problems = arithmetic.problems(args.n)
    print(f"demo model {model.manifest.name}, {args.n} held-out problems, greedy; {platform.machine()}, "
          f"{model.backend.name}")
    print("| reasoning budget | accuracy | mean reasoning tokens | mean answer latency (ms) |")
    print("|---|---|---|---|")
    for budget in args.budgets.split(","):
        cap = None if budget == "unlimited" else int(budget)
        result = score(model, arithmetic, problems, think=cap != 0, reasoning_budget=cap, max_tokens=400)
        print(f"| {budget} | {result.accuracy:.1%} | {result.mean_reasoning_tokens:.1f} | "
              f"{result.mean_latency_ms:.0f} |", flush=True)
    model.close()


if __name__ == "__main__":
    main()
