"""Benchmark: ONNX Runtime next to llama.cpp, side by side in `localai bench` rounds, on the demo model,
a ~250M Nemotron-H hybrid and a ~250M dense Llama-shaped model, at 4 and 8 bits.

    .venv/bin/python benchmarks/onnx_speed.py [--workdir /tmp/localai-bench] [-p 512] [-n 128] [-r 5]
                                              [--models demo hybrid dense]

Each model is converted afresh (so the packages are this checkout's graphs) to GGUF q4_k_m and q8_0 and
to ONNX int4 and int8 (ort flavour); then -r rounds of `localai bench` measure each package once per
round (after a warm-up, each in its own process, default thread policy), the order of the packages
reversed every other round. The speed of this shared machine drifts by 20-40% within minutes, so the
ratios pair ONNX int4 with q4_k_m and int8 with q8_0 within each round and the table shows their median
over the rounds, next to the median speeds.
The hybrid is benchmarks/convert_gguf.py's checkpoint; the dense one has the same hidden size and
vocabulary (16 layers of grouped-query attention and SwiGLU MLP, 246M parameters), written by
transformers from random weights (needs the dev extra).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from statistics import median

from convert_gguf import CONFIG, VOCAB, build_checkpoint

from converters import convert
from localai.cli.demo import checkpoint as demo_checkpoint
from localai.demo_model import save_tokenizer, train_tokenizer

PAIRS = (("int4", "q4_k_m"), ("int8", "q8_0"))
LLAMA = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 16, "num_attention_heads": 16,
         "num_key_value_heads": 4, "head_dim": 64, "vocab_size": VOCAB, "max_position_embeddings": 4096,
         "tie_word_embeddings": False, "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2}


def build_llama(folder: Path) -> None:
    import torch
    import transformers

    save_tokenizer(train_tokenizer(512), folder)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA)).to(torch.bfloat16)
    model.save_pretrained(folder)


def checkpoints(workdir: Path) -> dict[str, Path]:
    hybrid, dense = workdir / "nemotron-h-250m-bf16", workdir / "llama-250m-bf16"
    if not (hybrid / "model.safetensors").is_file():
        build_checkpoint(hybrid, CONFIG)
    if not (dense / "config.json").is_file():
        build_llama(dense)
    return {"demo": demo_checkpoint(), "hybrid": hybrid, "dense": dense}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("-r", type=int, default=5, help="rounds")
    parser.add_argument("--models", nargs="+", choices=("demo", "hybrid", "dense"), default=("demo", "hybrid", "dense"))
    args = parser.parse_args()
    folders = []
    for model, source in checkpoints(args.workdir).items():
        if model not in args.models:
            continue
        for onnx_quant, gguf_quant in PAIRS:
            for to, quant in (("onnx", onnx_quant), ("gguf", gguf_quant)):
                out = args.workdir / f"speed-{model}-{to}-{quant}"
                convert(str(source), to=to, quant=quant, output=out, name=f"{model}-{to}-{quant}", force=True)
                folders.append(str(out))
    rounds, machine = [], ""
    for i in range(args.r):
        found, machine = bench_round(folders[:: 1 if i % 2 == 0 else -1], args)
        rounds.append(found)

    def mid(name: str, key: str) -> float:
        return median(r[(name, key)] for r in rounds)

    print("| model | ONNX | t/s pp | t/s tg | ITL ms | GGUF | t/s pp | t/s tg | ITL ms | pp ONNX/GGUF | tg ONNX/GGUF |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for model in args.models:
        for onnx_quant, gguf_quant in PAIRS:
            o, g = f"{model}-onnx-{onnx_quant}", f"{model}-gguf-{gguf_quant}"
            pp, tg = (median(r[(o, test)] / r[(g, test)] for r in rounds) for test in ("pp", "tg"))
            print(f"| {model} | {onnx_quant} | {mid(o, 'pp'):.0f} | {mid(o, 'tg'):.1f} | {mid(o, 'itl'):.2f} | "
                  f"{gguf_quant} | {mid(g, 'pp'):.0f} | {mid(g, 'tg'):.1f} | {mid(g, 'itl'):.2f} | "
                  f"x{pp:.2f} | x{tg:.2f} |")
    print(f"\n{machine}, {args.r} rounds, pp{args.p} / tg{args.n}; medians")


def bench_round(folders: list[str], args: argparse.Namespace) -> tuple[dict[tuple[str, str], float], str]:
    """One `localai bench` run of every package (one measured run each): tokens/s by (model, "pp" or "tg")
    and the decode ITL median by (model, "itl"); and the machine."""
    bench = [sys.executable, "-m", "localai.cli", "bench", *folders, "-p", str(args.p), "-n", str(args.n),
             "-r", "1", "--format", "json"]
    report = json.loads(subprocess.run(bench, check=True, capture_output=True, text=True).stdout)
    found = {(row["model"], row["test"][:2]): row["tokens_per_s"] for row in report["results"]}
    found |= {(row["model"], "itl"): row["itl_p50_ms"] for row in report["results"] if row["test"].startswith("tg")}
    machine = report["machine"]
    return found, f"{machine['cpu']} ({machine['cpu_cores']} cores)"

if __name__ == "__main__":
    main()
