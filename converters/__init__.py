"""Hugging Face checkpoint -> model package.

One module per architecture (`nemotron_h.py`, `llama.py`, ...) maps config.json and the checkpoint's
tensors to an output plan; one module per output format (`to_gguf.py`, `to_onnx.py`, `to_tensorrt.py`,
each with a `FORMAT`: converters/formats.py) checks its options and writes it. A new architecture is a new
module plus a line in `ARCHITECTURES`; a new output format, a new module plus a line in `OUTPUT_FORMATS`.
`convert()` is the pipeline: options, checkpoint, plan, format checks, staging, manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from converters.architecture import Architecture
from converters.checkpoint import Checkpoint, read_json
from converters.formats import OUTPUT_FORMATS, Job, OutputFormat, Progress, Request, output_format
from converters.source import resolve_source
from converters.tensors import check_sources, parameter_counts
from converters.vocab import read_hf_tokenizer
from localai import __version__, store
from localai.backends.threads import ThreadPolicy
from localai.errors import ConversionError
from localai.package import (
    Manifest,
    Package,
    check_name,
    check_target,
    file_sha256,
    staged_directory,
    write_manifest,
)
from localai.units import shown

# config.json model_type -> module in this package
ARCHITECTURES: dict[str, str] = {
    "nemotron_h": "nemotron_h",
    "llama": "llama",
    "mistral": "llama",
    "qwen3": "qwen3",
    "qwen2": "qwen2",
}
GENERATION_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens", "do_sample")


def architecture_for(config: dict) -> Architecture:
    """The architecture module for a checkpoint's config.json."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        raise ConversionError(
            f"unsupported model_type {shown(model_type)}; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    module: Architecture = importlib.import_module(f"converters.{ARCHITECTURES[model_type]}")  # type: ignore[assignment]
    return module


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
    fmt = output_format(to)
    if threads:  # 0 or None: llama.cpp's quantizer picks
        ThreadPolicy.fixed(threads)  # the runtimes' bounds: llama.cpp's quantizer dies on thousands
    settings = fmt.check(Request(quant, flavor, block_size, compute_capabilities, max_context, max_prefill, threads))
    source = resolve_source(src)
    with Checkpoint(source.path) as ckpt:
        arch = architecture_for(ckpt.config)
        args = _without_mtp(arch.ModelArgs.from_config(ckpt.config), fmt, mtp, notice)
        tokenizer = read_hf_tokenizer(source.path)
        plan, shapes = _checked_plan(arch, args, ckpt)
        vocab = tokenizer.gguf_vocab(args.vocab_size)  # checks the tokenizer against the embedding size
        settings = fmt.prepare(arch, args, settings)
        package_name = check_name(name) if name else store.default_name(source.display_name, fmt.label(settings))
        target = _target(output, package_name, source.path, force)
        inputs = _hash_inputs(source.path, ckpt)
        with _disk_errors(target), staged_directory(target, replace=force, lock=store.lock_for(target)) as staging:
            written = fmt.write(Job(staging, package_name, source.path, arch, args, plan, ckpt, vocab, progress),
                                settings)
            manifest = Manifest(
                name=package_name,
                architecture=ckpt.config["model_type"],
                artifacts=written.artifacts,
                context_length=args.context_length,
                tokenizer=tokenizer.summary(),
                chat_template=tokenizer.chat_template,
                thinking=tokenizer.think_tokens,
                generation_defaults=_generation_defaults(source.path),
                source={**source.provenance, "files": inputs},
                converter={"name": "localai", "version": __version__, **written.versions},
                graph=written.graph,
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


def _checked_plan(arch: Architecture, args: Any, ckpt: Checkpoint) -> tuple[list[Any], dict[str, tuple[int, ...]]]:
    """The output plan, after checking the whole checkpoint against it: every tensor it names present with
    the shape the config implies, and nothing left over (the plan is every format's list of sources)."""
    present = set(ckpt.tensors)
    plan = arch.tensor_plan(args, present)
    shapes = {n: ref.shape for n, ref in ckpt.tensors.items()}
    dropped = arch.dropped_tensors(args, present) if hasattr(arch, "dropped_tensors") else []
    check_sources(plan, shapes, arch.IGNORED_TENSORS, dropped)
    return plan, shapes


def _target(output: Path | None, package_name: str, source: Path, force: bool) -> Path:
    """Where the package goes, refused before hashing what may be many gigabytes if it cannot go there."""
    target = output.expanduser().absolute() if output else store.package_path(package_name)
    if target.resolve() == source or target.resolve() in source.parents:
        raise ConversionError(f"the output {target} would replace the checkpoint folder it is made from")
    check_target(target, replace=force)
    return target


def _without_mtp(args: Any, fmt: OutputFormat, mtp: bool, notice: Callable[[str], None] | None) -> Any:
    """`args` with the MTP head left out where the user asked (--no-mtp) or the format has no place for it."""
    if not getattr(args, "mtp_layers", 0) or (mtp and fmt.keeps_mtp):
        return args
    if not fmt.keeps_mtp and mtp and notice:
        notice(f"the checkpoint's MTP head is left out: {fmt.name} packages run the main model only")
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


__all__ = ["ARCHITECTURES", "OUTPUT_FORMATS", "architecture_for", "convert"]
