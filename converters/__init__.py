"""Hugging Face checkpoint -> model package.

One module per architecture (`nemotron_h.py`, `llama.py`, ...) maps config.json and the checkpoint's
tensors to an output plan; one module per output format (`to_gguf.py`) writes it. A new architecture is
a new module plus a line in `ARCHITECTURES`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from converters import onnx_quant, to_gguf, to_onnx, to_tensorrt
from converters.checkpoint import Checkpoint, read_json
from converters.source import resolve_source
from converters.tensors import check_sources, parameter_counts
from converters.vocab import read_hf_tokenizer
from localai import __version__, store
from localai.backends.threads import ThreadPolicy
from localai.errors import ConversionError
from localai.package import (
    Artifact,
    Manifest,
    Package,
    check_name,
    check_target,
    file_sha256,
    staged_directory,
    write_manifest,
)

# config.json model_type -> module in this package
ARCHITECTURES: dict[str, str] = {
    "nemotron_h": "nemotron_h",
    "llama": "llama",
    "mistral": "llama",
    "qwen3": "qwen3",
    "qwen2": "qwen2",
}
OUTPUT_FORMATS = ("gguf", "onnx", "tensorrt")
GENERATION_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens", "do_sample")

Progress = Callable[[str, int, int], None]


def architecture_for(config: dict) -> ModuleType:
    """The architecture module for a checkpoint's config.json."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        raise ConversionError(
            f"unsupported model_type {repr(model_type)[:60]}; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return importlib.import_module(f"converters.{ARCHITECTURES[model_type]}")


def convert(
    src: str,
    *,
    to: str = "gguf",
    quant: str | None = None,
    output: Path | None = None,
    name: str | None = None,
    force: bool = False,
    threads: int | None = None,
    flavor: str | None = None,
    block_size: int | None = None,
    compute_capabilities: list[int] | None = None,
    max_context: int | None = None,
    max_prefill: int | None = None,
    mtp: bool = True,
    progress: Progress | None = None,
    notice: Callable[[str], None] | None = None,
) -> Package:
    """Convert checkpoint `src` (folder or repo id) into a package at `output`, or in the store.

    `to`: "gguf" (`quant` f32, f16 (default), bf16, q8_0 or a llama.cpp type), "onnx" (`quant` fp32
    (default), fp16, int8, int4; `flavor` "ort" (default) or "portable"; `block_size` of int8/int4) or
    "tensorrt" (`quant` fp16 (default), bf16, int4, fp8, nvfp4; `compute_capabilities` as 86, 89, ...; the
    profiles' `max_context` and `max_prefill`). `mtp`: keep a checkpoint's multi-token-prediction head
    (GGUF only; ONNX and TensorRT leave it out, saying so through `notice`)."""
    if to not in OUTPUT_FORMATS:
        raise ConversionError(f"unknown output format {to!r}; available: {', '.join(OUTPUT_FORMATS)}")
    if threads is not None:
        ThreadPolicy.fixed(threads)  # the runtimes' bounds: llama.cpp's quantizer dies on thousands
    engine_options = compute_capabilities is not None or max_context is not None or max_prefill is not None
    if to != "tensorrt" and engine_options:
        raise ConversionError("--compute-capability, --max-context and --max-prefill apply to --to tensorrt only")
    if to == "gguf":
        if flavor is not None or block_size is not None:
            raise ConversionError("--flavor and --block-size apply to --to onnx and tensorrt only")
        quant = to_gguf.check_quant(quant or "f16")
    elif to == "onnx":
        block_size = onnx_quant.DEFAULT_BLOCK if block_size is None else block_size
        quant, flavor = onnx_quant.check(quant or "fp32", flavor or "ort", block_size)
    else:
        if flavor not in (None, "portable"):
            raise ConversionError("TensorRT engines are built from the portable ONNX flavour only")
        flavor, block_size = "portable", onnx_quant.DEFAULT_BLOCK if block_size is None else block_size
        quant = (quant or "fp16").lower()
    source = resolve_source(src)
    with Checkpoint(source.path) as ckpt:
        arch = architecture_for(ckpt.config)
        args = _without_mtp(arch.ModelArgs.from_config(ckpt.config), to, mtp, notice)
        tokenizer = read_hf_tokenizer(source.path)
        # the GGUF plan names every source tensor with its expected shape: both formats check against it
        present = set(ckpt.tensors)
        plan = arch.tensor_plan(args, present)
        shapes = {n: ref.shape for n, ref in ckpt.tensors.items()}
        dropped = arch.dropped_tensors(args, present) if hasattr(arch, "dropped_tensors") else []
        check_sources(plan, shapes, arch.IGNORED_TENSORS, dropped)
        vocab = tokenizer.gguf_vocab(args.vocab_size)  # checks the tokenizer against the embedding size
        if to == "gguf":
            to_gguf.check_hparams(arch, args)
        if to != "gguf" and not hasattr(arch, "build_onnx"):
            raise ConversionError(f"{to} export is not available for model_type {ckpt.config['model_type']!r}")
        engine = (to_tensorrt.check(quant, compute_capabilities, max_context, max_prefill, args.context_length)
                  if to == "tensorrt" else None)

        label = {"gguf": quant, "onnx": f"onnx-{quant}" + ("-portable" if flavor == "portable" else ""),
                 "tensorrt": f"trt-{quant}"}[to]
        package_name = check_name(name) if name else store.default_name(source.display_name, label)
        target = output.expanduser().absolute() if output else store.package_path(package_name)
        if target.resolve() == source.path or target.resolve() in source.path.parents:
            raise ConversionError(f"the output {target} would replace the checkpoint folder it is made from")
        check_target(target, replace=force)  # before hashing what may be many gigabytes
        inputs = _hash_inputs(source.path, ckpt)
        with _disk_errors(target), staged_directory(target, replace=force, lock=store.lock_for(target)) as staging:
            if to == "gguf":
                artifacts = [_write_gguf(staging, package_name, arch, args, plan, ckpt, vocab, quant, threads,
                                         progress)]
                graph: dict[str, object] = {}
                versions = {"gguf": _version("gguf"), "llama_cpp_python": _version("llama_cpp_python")}
            elif engine is None:
                graph = _write_onnx(staging, arch, args, ckpt, quant, str(flavor), int(block_size), progress)
                artifacts = [_artifact(staging / to_onnx.MODEL_FILE, "onnx", quant),
                             _artifact(staging / to_onnx.DATA_FILE, "onnx-data", quant)]
                runtime = next((v for v in map(_version, ("onnxruntime", "onnxruntime-gpu")) if v != "unknown"),
                               "unknown")
                versions = {"onnx": _version("onnx"), "onnxruntime": runtime}
            else:
                graph = _write_engine(staging, arch, args, ckpt, engine, int(block_size), progress)
                artifacts = [_artifact(staging / to_tensorrt.ENGINE_FILE, "tensorrt", quant)]
                versions = {"onnx": _version("onnx"), graph["tensorrt"]["library"]: graph["tensorrt"]["version"]}
            if to != "gguf":  # the ONNX Runtime and TensorRT backends tokenize with these
                artifacts += [_artifact(path, "tokenizer", "") for path in to_onnx.copy_tokenizer(source.path, staging)]
            manifest = Manifest(
                name=package_name,
                architecture=ckpt.config["model_type"],
                artifacts=artifacts,
                context_length=args.context_length,
                tokenizer=tokenizer.summary(),
                chat_template=tokenizer.chat_template,
                thinking=tokenizer.think_tokens,
                generation_defaults=_generation_defaults(source.path),
                source={**source.provenance, "files": inputs},
                converter={"name": "localai", "version": __version__, **versions},
                graph=graph,
                parameters=_parameters(args, plan, shapes),
            )
            write_manifest(staging, manifest)
    return Package(target, manifest)


@contextlib.contextmanager
def _disk_errors(target: Path) -> Iterator[None]:
    """A failed write (a full disk: numpy's `tofile` says "N requested and M written") as one clear error."""
    try:
        yield
    except OSError as exc:
        raise ConversionError(f"cannot write the package {target}: {exc.strerror or exc}") from exc


def _write_gguf(staging: Path, package_name: str, arch: ModuleType, args: object, plan: list, ckpt: Checkpoint,
                vocab: object, quant: str, threads: int | None, progress: Progress | None) -> Artifact:
    artifact_path = staging / f"{package_name}.gguf"

    def report(done: int, total: int) -> None:
        if progress:
            progress("writing tensors", done, total)

    if quant in to_gguf.DIRECT_TYPES:
        to_gguf.write_gguf(artifact_path, arch, args, plan, ckpt, vocab, package_name, quant, report)
    else:
        intermediate = staging / ".unquantized.gguf"
        to_gguf.write_gguf(intermediate, arch, args, plan, ckpt, vocab, package_name,
                           to_gguf.lossless_type(ckpt, plan), report)
        if progress:
            progress(f"quantizing to {quant} with llama.cpp", 0, 1)
        to_gguf.quantize_with_llama_cpp(intermediate, artifact_path, quant, threads)
        intermediate.unlink()
    return _artifact(artifact_path, "gguf", quant)


def _write_onnx(folder: Path, arch: ModuleType, args: object, ckpt: Checkpoint, quant: str, flavor: str,
                block_size: int, progress: Progress | None) -> dict[str, object]:
    if progress:
        progress("building the ONNX graph", 0, 1)
    graph = to_onnx.write_onnx(folder, arch, args, ckpt, onnx_quant.WeightFormat(quant, flavor, block_size),
                               __version__)
    if progress:
        progress("building the ONNX graph", 1, 1)
    return graph


def _write_engine(staging: Path, arch: ModuleType, args: object, ckpt: Checkpoint,
                  engine: to_tensorrt.EngineSettings, block_size: int, progress: Progress | None) -> dict[str, object]:
    """The portable ONNX graph in a scratch folder of `staging`, then the engine built from it."""
    scratch = staging / ".onnx"
    scratch.mkdir()
    graph = _write_onnx(scratch, arch, args, ckpt, engine.quant, "portable", block_size, progress)
    if progress:
        progress("building the TensorRT engine", 0, 1)
    graph["tensorrt"] = to_tensorrt.build_engine(scratch / to_onnx.MODEL_FILE, staging / to_tensorrt.ENGINE_FILE,
                                                 engine, graph["inputs"])  # type: ignore[arg-type]
    if progress:
        progress("building the TensorRT engine", 1, 1)
    shutil.rmtree(scratch)
    return graph


def _without_mtp(args: Any, to: str, mtp: bool, notice: Callable[[str], None] | None) -> Any:
    """`args` with the MTP head left out where the user asked (--no-mtp) or the format has no place for it."""
    if not getattr(args, "mtp_layers", 0) or (mtp and to == "gguf"):
        return args
    if to != "gguf" and mtp and notice:
        notice(f"the checkpoint's MTP head is left out: {to} packages run the main model only")
    return dataclasses.replace(args, keep_mtp=False)


def _parameters(args: Any, plan: list, shapes: dict[str, tuple[int, ...]]) -> dict[str, object]:
    """Parameter counts for the manifest; mixture-of-experts models add their expert counts."""
    counts: dict[str, object] = {**parameter_counts(plan, shapes)}
    moe = getattr(args, "moe", None)
    if moe is not None:
        counts["experts"] = {"routed": moe.experts, "per_token": moe.top_k, "shared": 1}
    if getattr(args, "with_mtp", False):
        counts["mtp_layers"] = 1
    return counts


def _artifact(path: Path, fmt: str, quant: str) -> Artifact:
    return Artifact(path.name, fmt, quant, path.stat().st_size, file_sha256(path))


def _hash_inputs(root: Path, ckpt: Checkpoint) -> list[dict[str, object]]:
    names = {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"}
    files = sorted({*(root / n for n in names if (root / n).is_file()), *ckpt.weight_files})
    return [{"path": f.name, "bytes": f.stat().st_size, "sha256": file_sha256(f)} for f in files]


def _generation_defaults(root: Path) -> dict[str, object]:
    path = root / "generation_config.json"
    if not path.is_file():
        return {}
    config = read_json(path, "generation_config.json")
    return {k: config[k] for k in GENERATION_KEYS if config.get(k) is not None}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


__all__ = ["ARCHITECTURES", "OUTPUT_FORMATS", "architecture_for", "convert"]
