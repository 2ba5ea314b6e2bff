"""Benchmark: ONNX Runtime next to llama.cpp, side by side in one `localai bench` run, on the demo model,
a ~250M Nemotron-H hybrid and a ~250M dense Llama-shaped model, at 4 and 8 bits.

    .venv/bin/python benchmarks/onnx_speed.py [--workdir /tmp/localai-bench] [-p 512] [-n 128] [-r 3]

Each model is converted afresh (so the packages are this checkout's graphs) to GGUF q4_k_m and q8_0 and
to ONNX int4 and int8 (ort flavour); then `localai bench` measures all of them in one run, each in its
own process, with the default thread policy. The ratios pair ONNX int4 with q4_k_m and int8 with q8_0.
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
    parser.add_argument("-r", type=int, default=3)
    args = parser.parse_args()
    folders = []
    for model, source in checkpoints(args.workdir).items():
        for onnx_quant, gguf_quant in PAIRS:
            for to, quant in (("onnx", onnx_quant), ("gguf", gguf_quant)):
                out = args.workdir / f"speed-{model}-{to}-{quant}"
                convert(str(source), to=to, quant=quant, output=out, name=f"{model}-{to}-{quant}", force=True)
                folders.append(str(out))
    bench = [sys.executable, "-m", "localai.cli", "bench", *folders, "-p", str(args.p), "-n", str(args.n),
             "-r", str(args.r), "--format", "json"]
    report = json.loads(subprocess.run(bench, check=True, capture_output=True, text=True).stdout)
    rate = {(row["model"], row["test"][:2]): row["tokens_per_s"] for row in report["results"]}
    itl = {row["model"]: row["itl_p50_ms"] for row in report["results"] if row["test"].startswith("tg")}
    print("| model | ONNX | t/s pp | t/s tg | ITL ms | GGUF | t/s pp | t/s tg | ITL ms | pp ONNX/GGUF | tg ONNX/GGUF |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for model in ("demo", "hybrid", "dense"):
        for onnx_quant, gguf_quant in PAIRS:
            o, g = f"{model}-onnx-{onnx_quant}", f"{model}-gguf-{gguf_quant}"
            print(f"| {model} | {onnx_quant} | {rate[(o, 'pp')]:.0f} | {rate[(o, 'tg')]:.1f} | {itl[o]:.2f} | "
                  f"{gguf_quant} | {rate[(g, 'pp')]:.0f} | {rate[(g, 'tg')]:.1f} | {itl[g]:.2f} | "
                  f"x{rate[(o, 'pp')] / rate[(g, 'pp')]:.2f} | x{rate[(o, 'tg')] / rate[(g, 'tg')]:.2f} |")
    machine = report["machine"]
    print(f"\n{machine['cpu']} ({machine['cpu_cores']} cores), {args.r} runs per test after a warm-up, "
          f"pp{args.p} / tg{args.n}")


if __name__ == "__main__":
    main()
