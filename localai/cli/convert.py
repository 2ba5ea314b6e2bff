"""`localai convert SRC [--to gguf|onnx] [--quant Q]`: a Hugging Face checkpoint -> a model package."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("convert", parents=parents, help="convert a Hugging Face checkpoint into a model package",
                       description="Convert a checkpoint folder or Hugging Face repo id into a model package.")
    p.add_argument("source", metavar="SRC",
                   help="checkpoint folder; owner/name[@revision] from the local Hugging Face cache (localai pull); "
                        "hf:owner/name[@revision] to download it if need be")
    p.add_argument("--to", default="gguf", help="output format: gguf (default), onnx or tensorrt")
    p.add_argument("--quant", help="gguf: f32, f16 (default), bf16, q8_0 or any llama.cpp type (q4_k_m, q6_k, ...); "
                                   "onnx: fp32 (default), fp16, int8, int4 (bf16, fp8, nvfp4: --flavor portable); "
                                   "tensorrt: fp16 (default), bf16 (8.0+), int4, fp8 (8.9+), nvfp4 (12.0+)")
    p.add_argument("--flavor",
                   help="onnx: 'ort' (default; ONNX Runtime's MatMulNBits for int8/int4) or 'portable' "
                        "(standard operators only, for TensorRT)")
    p.add_argument("--block-size", type=int, help="onnx int8/int4: weights per scale (default 32)")
    p.add_argument("--compute-capability", type=capabilities, metavar="LIST",
                   help="tensorrt: target GPUs as compute capabilities, e.g. 86,89,120 (the default)")
    p.add_argument("--max-context", type=int, metavar="N",
                   help="tensorrt: longest context the engine serves (default min(4096, the model's))")
    p.add_argument("--max-prefill", type=int, metavar="N",
                   help="tensorrt: most new tokens in one call (default min(1024, --max-context))")
    p.add_argument("--no-mtp", dest="mtp", action="store_false",
                   help="gguf: leave out a multi-token-prediction head (kept by default; onnx/tensorrt never keep it)")
    p.add_argument("-o", "--output", type=Path, help="package folder to create (default: in the local store)")
    p.add_argument("--name", help="package name (default: derived from SRC and --quant)")
    p.add_argument("--force", action="store_true", help="replace an existing package of that name")
    p.add_argument("--threads", type=int, help="threads for llama.cpp's quantizer")
    p.add_argument("--json", action="store_true", help='print {"package": DIR, "manifest": {...}}')
    return p


def capabilities(text: str) -> list[int]:
    """--compute-capability: "86,89,120" or "8.6,8.9,12.0" -> [86, 89, 120]."""
    try:
        return [round(float(part) * 10) if "." in part else int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected compute capabilities such as 86,89,120, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from converters import convert
    from localai.units import human_bytes

    show_progress = sys.stderr.isatty() and not args.json

    def progress(stage: str, done: int, total: int) -> None:
        if show_progress:
            print(f"\r{stage}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    package = convert(args.source, to=args.to, quant=args.quant, output=args.output, name=args.name,
                      force=args.force, threads=args.threads, flavor=args.flavor, block_size=args.block_size,
                      compute_capabilities=args.compute_capability, max_context=args.max_context,
                      max_prefill=args.max_prefill, mtp=args.mtp, progress=progress,
                      notice=lambda text: print(f"note: {text}", file=sys.stderr))
    if args.json:
        print(json.dumps({"package": str(package.root), "manifest": package.manifest.to_dict()}))
    else:
        artifact = package.manifest.artifacts[0]
        size = sum(a.bytes for a in package.manifest.artifacts)
        print(f"{package.manifest.name}: {artifact.format} {artifact.quant}, {human_bytes(size)} -> {package.root}")
    return 0
