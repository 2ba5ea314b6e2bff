"""Benchmark: bf16 Nemotron-H checkpoint (~250M parameters) -> f16 GGUF, localai vs llama.cpp's converter.

Both converters run on the same checkpoint in the same session, alternating, each in its own process;
the script reports wall time and peak RSS (medians over --repeat runs) and checks that the two GGUFs
give the same logits in llama.cpp. `--model moe` takes a Nemotron 3-style MoE hybrid of the same size
instead of the dense Nemotron Nano 2-style one.

    .venv/bin/python benchmarks/convert_gguf.py --llama-cpp DIR [--model dense|moe] [--repeat 3] [--workdir DIR]

DIR is a llama.cpp source tree (its convert_hf_to_gguf.py, conversion/ and gguf-py/); the
llama-cpp-python sdist carries one under vendor/llama.cpp:

    pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36 && tar xzf llama_cpp_python-0.3.36.tar.gz

llama.cpp's converter fails on this checkpoint in two ways, both patched in its process so that it can
serve as the baseline: it identifies tokenizers by a hash of known models, so `get_vocab_base_pre` is made
to answer "gpt-2" (the pre-tokenizer localai derives); and it reads config.json through transformers 5.x,
which adds MoE defaults to every Nemotron-H config, so it writes a dense model as `nemotron_h_moe` that
llama.cpp cannot load; `load_hparams` is made to read config.json as is.
Needs the dev extra (torch, transformers) for llama.cpp's converter.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from localai.demo_model import nemotron_h_config, random_nemotron_h_weights, save_tokenizer, train_tokenizer

# ~250M parameters: 25 layers (11 Mamba2, 3 attention, 11 MLP), hidden 1024, untied 32k vocabulary
CONFIG = {"hidden_size": 1024, "hybrid_override_pattern": "M-M-M*-M-M-M-M*-M-M-M-M*-", "num_attention_heads": 8,
          "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 3584, "mamba_num_heads": 32,
          "mamba_head_dim": 64, "ssm_state_size": 128, "n_groups": 8}
# 287M parameters (161M active): 14 layers (6 Mamba2, 2 attention, 6 MoE of 24 experts, top-4, one shared
# expert), Nemotron 3 Nano's layer order, hidden 1024, untied 32k vocabulary
MOE_CONFIG = {**CONFIG, "hybrid_override_pattern": "MEMEM*EMEMEM*E", "n_routed_experts": 24, "num_experts_per_tok": 4,
              "moe_intermediate_size": 512, "moe_shared_expert_intermediate_size": 1024, "n_group": 1,
              "topk_group": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": True, "n_shared_experts": 1}
CONFIGS = {"dense": CONFIG, "moe": MOE_CONFIG}
VOCAB = 32768

LLAMA_CPP_RUNNER = """
import sys
sys.path[:0] = [{tree!r}, {tree!r} + "/gguf-py"]
sys.argv = ["convert_hf_to_gguf.py", {src!r}, "--outtype", {outtype!r}, "--outfile", {out!r}]
import json
from conversion import base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
read_config = lambda d, is_mistral_format=False: json.loads((d / "config.json").read_text())
base.ModelBase.load_hparams = staticmethod(read_config)
import runpy
runpy.run_path({tree!r} + "/convert_hf_to_gguf.py", run_name="__main__")
"""
LOCALAI_RUNNER = """
import sys
from converters import convert
convert({src!r}, quant="f16", output=__import__("pathlib").Path({out!r}), name="bench")
"""


def write_bf16_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """safetensors with bfloat16 data (numpy has no bfloat16; round-to-nearest-even by hand)."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
        bf16 = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
        header[name] = {"dtype": "BF16", "shape": list(array.shape), "data_offsets": [offset, offset + bf16.nbytes]}
        blobs.append(bf16)
        offset += bf16.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for blob in blobs:
            blob.tofile(fh)


def build_checkpoint(folder: Path, overrides: dict) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(512)
    save_tokenizer(tok, folder)
    config = nemotron_h_config(VOCAB, **overrides)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    weights = random_nemotron_h_weights(config)
    write_bf16_safetensors(folder / "model.safetensors", weights)
    return sum(w.size for w in weights.values())


def measure(code: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `python -c code` in a fresh child of a fresh measuring process."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        f"subprocess.run([sys.executable, '-c', {code!r}], check=True, stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1]) / 1024


def compare_tensors(ours: Path, theirs: Path, config: dict) -> dict[str, int | float]:
    """Tensor-by-tensor comparison. llama.cpp's converter permutes each attention head's Q/K rows as it
    does for RoPE models; Nemotron-H attention has no RoPE, so both layouts compute the same scores."""
    import gguf

    from converters.llama import _rotary_permute

    a = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    b = {t.name: t for t in gguf.GGUFReader(theirs).tensors}
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    result: dict[str, int | float] = {"tensors": len(a), "identical": 0, "permuted_qk": 0, "max_other_diff": 0.0}
    assert a.keys() == b.keys(), a.keys() ^ b.keys()
    for name, tensor in a.items():
        x, y = np.asarray(tensor.data), np.asarray(b[name].data)
        assert tensor.tensor_type == b[name].tensor_type, name
        kind = name.split(".")[2] if name.startswith("blk.") else name
        if np.array_equal(x, y):
            result["identical"] += 1
        elif kind in heads and np.array_equal(_rotary_permute(x, heads[kind]), y):
            result["permuted_qk"] += 1
        else:
            diff = float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max())
            result["max_other_diff"] = max(result["max_other_diff"], diff)
    return result


def same_logits(a: Path, b: Path) -> float:
    import localai

    tokens = np.random.default_rng(0).integers(0, 500, 64).tolist()
    logits = []
    for path in (a, b):
        model = localai.load(path, n_ctx=256, kv_cache="f32")
        logits.append(model.backend.logits(tokens))
        model.close()
    return float(np.abs(logits[0] - logits[1]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source tree")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", choices=sorted(CONFIGS), default="dense")
    args = parser.parse_args()
    tree = str(args.llama_cpp.resolve())
    config = CONFIGS[args.model]
    src = args.workdir / f"nemotron-h-{args.model}-250m-bf16"
    if not (src / "model.safetensors").is_file():
        print(f"building checkpoint: {build_checkpoint(src, config) / 1e6:.0f}M parameters", file=sys.stderr)
    size_mb = (src / "model.safetensors").stat().st_size / 1e6
    runs: dict[str, list[tuple[float, float]]] = {"localai": [], "llama.cpp": []}
    outputs = {"localai": args.workdir / f"localai-{args.model}-f16",
               "llama.cpp": args.workdir / f"llama-cpp-{args.model}-f16.gguf"}
    for _ in range(args.repeat):
        for name in runs:
            subprocess.run(["rm", "-rf", str(outputs[name])], check=True)
            subprocess.run(["cat", str(src / "model.safetensors")], stdout=subprocess.DEVNULL, check=True)
            runner = LOCALAI_RUNNER if name == "localai" else LLAMA_CPP_RUNNER
            runs[name].append(measure(runner.format(tree=tree, src=str(src), out=str(outputs[name]), outtype="f16")))
    diff = same_logits(outputs["localai"] / "bench.gguf", outputs["llama.cpp"])
    tensors = compare_tensors(outputs["localai"] / "bench.gguf", outputs["llama.cpp"], config)
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs, "
          f"Python {platform.python_version()}; checkpoint {size_mb:.0f} MB bf16; {args.repeat} runs each")
    print("| converter | wall time (median, s) | peak RSS (median, MB) | runs (s) |")
    print("|---|---|---|---|")
    for name, values in runs.items():
        times, rss = [v[0] for v in values], [v[1] for v in values]
        print(f"| {name} | {statistics.median(times):.1f} | {statistics.median(rss):.0f} | "
              f"{', '.join(f'{t:.1f}' for t in times)} |")
    ratio_t = statistics.median(v[0] for v in runs["localai"]) / statistics.median(v[0] for v in runs["llama.cpp"])
    ratio_m = statistics.median(v[1] for v in runs["localai"]) / statistics.median(v[1] for v in runs["llama.cpp"])
    print(f"localai / llama.cpp: time x{ratio_t:.2f}, peak RSS x{ratio_m:.2f}")
    print(f"outputs: {tensors['tensors']} tensors, {tensors['identical']} identical, {tensors['permuted_qk']} equal "
          f"up to llama.cpp's per-head Q/K row order, others differ by at most {tensors['max_other_diff']:.1e}; "
          f"max |logit difference| in llama.cpp (f32 KV cache, 64 tokens): {diff:.2e}")


if __name__ == "__main__":
    main()
