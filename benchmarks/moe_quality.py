"""MoE hybrids: logit fidelity of localai's GGUFs next to llama.cpp's own converter + quantizer, on the test
suite's tiny Nemotron 3 fixtures.

    PYTHONPATH=. .venv/bin/python benchmarks/moe_quality.py --llama-cpp DIR [--workdir /tmp/localai-moe-quality]

DIR is a llama.cpp source tree, as for benchmarks/convert_gguf.py (whose patched runner this uses). For each
fixture and type, the mean KL(transformers float32 || GGUF) over 80 random tokens of localai's package and
of llama.cpp's GGUF: its converter writes f16 and q8_0 itself; q4_k_m is llama.cpp's quantizer applied to its
converter's lossless output (f32, or bf16 for a bf16 checkpoint), as localai does with its own. Then the
ONNX packages' KL against the ONNX fp32 package. Random weights route and quantize worse than trained ones:
compare the columns, not the absolute values. Needs the dev extra.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from convert_gguf import LLAMA_CPP_RUNNER

import localai
from converters import convert, to_gguf
from tests import zoo

GGUF_TYPES = ("f16", "q8_0", "q4_k_m")


def llama_cpp_gguf(tree: str, checkpoint: Path, quant: str, workdir: Path) -> Path:
    """llama.cpp's own GGUF of `checkpoint` in `quant`."""
    direct = quant if quant in ("f16", "q8_0") else ("bf16" if "bfloat16" in (checkpoint / "config.json").read_text()
                                                      else "f32")
    out = workdir / f"{checkpoint.name}-llama-cpp-{direct}.gguf"
    if not out.is_file():
        subprocess.run([sys.executable, "-c", LLAMA_CPP_RUNNER.format(tree=tree, src=str(checkpoint), out=str(out),
                                                                       outtype=direct)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if quant == direct:
        return out
    quantized = workdir / f"{checkpoint.name}-llama-cpp-{quant}.gguf"
    to_gguf.quantize_with_llama_cpp(out, quantized, quant)
    return quantized


def gguf_kl(path: Path, tokens: list[int], reference) -> float:
    model = localai.load(path, n_ctx=256)
    try:
        return zoo.mean_kl(reference, model.backend.logits(tokens))
    finally:
        model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source tree")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-moe-quality"))
    parser.add_argument("--models", nargs="*", default=zoo.MOE_MODELS)
    args = parser.parse_args()
    tree = str(args.llama_cpp.resolve())
    args.workdir.mkdir(parents=True, exist_ok=True)
    gguf_rows, onnx_rows = [], []
    for name in args.models:
        checkpoint = zoo.checkpoint_in(args.workdir, name)
        tokens = zoo.random_tokens(80, 500, seed=2)
        reference = zoo.reference_logits(zoo.reference_model(checkpoint), tokens)
        for quant in GGUF_TYPES:
            out = args.workdir / f"{name}-{quant}"
            shutil.rmtree(out, ignore_errors=True)
            ours = gguf_kl(next(convert(str(checkpoint), quant=quant, output=out).root.glob("*.gguf")), tokens,
                           reference)
            theirs = gguf_kl(llama_cpp_gguf(tree, checkpoint, quant, args.workdir), tokens, reference)
            gguf_rows.append(f"| {name} | {quant} | {ours:.2e} | {theirs:.2e} | x{ours / theirs:.2f} |")
        onnx = {}
        for quant in ("fp32", "int8", "int4"):
            out = args.workdir / f"{name}-onnx-{quant}"
            shutil.rmtree(out, ignore_errors=True)
            model = localai.load(convert(str(checkpoint), to="onnx", quant=quant, output=out).root, n_ctx=256)
            onnx[quant] = model.backend.logits(tokens)
            model.close()
        kl = {quant: zoo.mean_kl(onnx["fp32"], onnx[quant]) for quant in ("int8", "int4")}
        onnx_rows.append(f"| {name} | {zoo.mean_kl(reference, onnx['fp32']):.1e} | {kl['int8']:.2e} | "
                         f"{kl['int4']:.2e} |")
    print("| fixture | type | localai mean KL | llama.cpp mean KL | localai / llama.cpp |")
    print("|---|---|---|---|---|")
    print("\n".join(gguf_rows))
    print()
    print("| fixture | ONNX fp32 KL vs transformers | int8 KL vs fp32 | int4 KL vs fp32 |")
    print("|---|---|---|---|")
    print("\n".join(onnx_rows))


if __name__ == "__main__":
    main()
