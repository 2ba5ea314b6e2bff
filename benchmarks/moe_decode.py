"""Benchmark: a ~290M-parameter Nemotron 3-style MoE hybrid next to a dense Nemotron-H of the same active
size, in GGUF and ONNX, with `localai bench` (all four packages in one run, each in its own process).

    .venv/bin/python benchmarks/moe_decode.py [--workdir /tmp/localai-bench] [-p 128] [-n 128] [-r 3]

The MoE checkpoint is benchmarks/convert_gguf.py's (`--model moe`): 14 layers in Nemotron 3 Nano's order (6
Mamba2, 2 attention, 6 MoE of 24 experts of width 512, top-4, one shared expert of width 1024). The dense one
has the same layers with each MoE layer replaced by a dense ReLU² MLP as wide as what a token runs there
(4 x 512 + 1024 = 3072), so both compute the same per token and differ in what they hold.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from convert_gguf import MOE_CONFIG, build_checkpoint

from converters import convert

ACTIVE_WIDTH = MOE_CONFIG["num_experts_per_tok"] * MOE_CONFIG["moe_intermediate_size"] + MOE_CONFIG[
    "moe_shared_expert_intermediate_size"]
MOE_KEYS = ("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "moe_shared_expert_intermediate_size",
            "n_group", "topk_group", "routed_scaling_factor", "norm_topk_prob", "n_shared_experts")
DENSE_CONFIG = {**{k: v for k, v in MOE_CONFIG.items() if k not in MOE_KEYS},
                "hybrid_override_pattern": MOE_CONFIG["hybrid_override_pattern"].replace("E", "-"),
                "intermediate_size": ACTIVE_WIDTH}
PACKAGES = (("gguf", "q8_0"), ("onnx", "int4"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("-p", type=int, default=128)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("-r", type=int, default=3)
    args = parser.parse_args()
    folders = []
    for name, config in (("moe", MOE_CONFIG), ("dense-active", DENSE_CONFIG)):
        src = args.workdir / f"nemotron-h-{name}-250m-bf16"
        if not (src / "model.safetensors").is_file():
            print(f"building {name}: {build_checkpoint(src, config) / 1e6:.0f}M parameters", file=sys.stderr)
        for to, quant in PACKAGES:
            out = args.workdir / f"{name}-{to}-{quant}"
            shutil.rmtree(out, ignore_errors=True)
            package = convert(str(src), to=to, quant=quant, output=out, name=f"{name}-{quant}")
            counts = package.manifest.parameters
            print(f"{package.manifest.name}: {counts['total'] / 1e6:.0f}M parameters, {counts['active'] / 1e6:.0f}M "
                  "active per token", file=sys.stderr)
            folders.append(str(out))
    bench = [sys.executable, "-m", "localai.cli", "bench", *folders, "-p", str(args.p), "-n", str(args.n), "-r",
             str(args.r), "--format", "json"]
    report = json.loads(subprocess.run(bench, check=True, capture_output=True, text=True).stdout)
    speed = {(row["model"], row["test"][:2]): row["tokens_per_s"] for row in report["results"]}
    print("| package | pp t/s | tg t/s | peak RSS MB |")
    print("|---|---:|---:|---:|")
    for row in (r for r in report["results"] if r["test"].startswith("tg")):
        print(f"| {row['model']} | {speed[(row['model'], 'pp')]:.0f} | {row['tokens_per_s']:.1f} | "
              f"{row['peak_rss_mb']:.0f} |")
    for to, quant in PACKAGES:
        moe, dense = f"moe-{quant}", f"dense-active-{quant}"
        pp, tg = (speed[(moe, test)] / speed[(dense, test)] for test in ("pp", "tg"))
        print(f"{to} {quant}: MoE / dense of the same active size: pp x{pp:.2f}, tg x{tg:.2f}")
    machine = report["machine"]
    print(f"{machine['cpu']} ({machine['cpu_cores']} cores), {machine['threads']} threads, {args.r} runs per test")

if __name__ == "__main__":
    main()
