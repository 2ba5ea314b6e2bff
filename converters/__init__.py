"""Hugging Face checkpoint -> model package.

One module per architecture (`nemotron_h.py`, `llama.py`, ...) maps config.json and the checkpoint's
tensors to an output plan; one module per output format (`to_gguf.py`) writes it. A new architecture is
a new module plus a line in `ARCHITECTURES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from converters import to_gguf
from converters.checkpoint import Checkpoint, read_json
from converters.source import resolve_source
from converters.tensors import check_sources
from converters.vocab import read_hf_tokenizer
from localai import __version__, store
from localai.errors import ConversionError
from localai.package import Artifact, Manifest, Package, check_target, file_sha256, staged_directory, write_manifest

# config.json model_type -> module in this package
ARCHITECTURES: dict[str, str] = {
    "nemotron_h": "nemotron_h",
    "llama": "llama",
    "mistral": "llama",
    "qwen3": "qwen3",
    "qwen2": "qwen2",
}
OUTPUT_FORMATS = ("gguf",)
GENERATION_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens", "do_sample")

Progress = Callable[[str, int, int], None]


def architecture_for(config: dict) -> ModuleType:
    """The architecture module for a checkpoint's config.json."""
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ConversionError(
            f"unsupported model_type {model_type!r}; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return importlib.import_module(f"converters.{ARCHITECTURES[model_type]}")


def convert(
    src: str,
    *,
    to: str = "gguf",
    quant: str = "f16",
    output: Path | None = None,
    name: str | None = None,
    force: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Package:
    """Convert checkpoint `src` (folder or repo id) into a package at `output`, or in the store."""
    if to not in OUTPUT_FORMATS:
        raise ConversionError(f"unknown output format {to!r}; available: {', '.join(OUTPUT_FORMATS)}")
    quant = to_gguf.check_quant(quant)
    source = resolve_source(src)
    with Checkpoint(source.path) as ckpt:
        arch = architecture_for(ckpt.config)
        args = arch.ModelArgs.from_config(ckpt.config)
        tokenizer = read_hf_tokenizer(source.path)
        plan = arch.tensor_plan(args, set(ckpt.tensors))
        check_sources(plan, {n: ref.shape for n, ref in ckpt.tensors.items()}, arch.IGNORED_TENSORS)
        vocab = tokenizer.gguf_vocab(args.vocab_size)

        package_name = store.validate_name(name) if name else store.default_name(source.display_name, quant)
        target = output.expanduser().absolute() if output else store.package_path(package_name)
        if target.resolve() == source.path or target.resolve() in source.path.parents:
            raise ConversionError(f"the output {target} would replace the checkpoint folder it is made from")
        check_target(target, replace=force)  # before hashing what may be many gigabytes
        inputs = _hash_inputs(source.path, ckpt)
        with staged_directory(target, replace=force) as staging:
            artifact_path = staging / f"{package_name}.gguf"

            def report(done: int, total: int) -> None:
                if progress:
                    progress("writing tensors", done, total)

            if quant in to_gguf.DIRECT_TYPES:
                to_gguf.write_gguf(artifact_path, arch, args, plan, ckpt, vocab, package_name, quant, report)
            else:
                intermediate = staging / ".unquantized.gguf"
                to_gguf.write_gguf(intermediate, arch, args, plan, ckpt, vocab, package_name,
                                   to_gguf.lossless_type(ckpt), report)
                if progress:
                    progress(f"quantizing to {quant} with llama.cpp", 0, 1)
                to_gguf.quantize_with_llama_cpp(intermediate, artifact_path, quant, threads)
                intermediate.unlink()
            manifest = Manifest(
                name=package_name,
                architecture=ckpt.config["model_type"],
                artifacts=[Artifact(artifact_path.name, "gguf", quant, artifact_path.stat().st_size,
                                    file_sha256(artifact_path))],
                context_length=args.context_length,
                tokenizer=tokenizer.summary(),
                chat_template=tokenizer.chat_template,
                thinking=tokenizer.think_tokens,
                generation_defaults=_generation_defaults(source.path),
                source={**source.provenance, "files": inputs},
                converter={"name": "localai", "version": __version__, "gguf": _version("gguf"),
                           "llama_cpp_python": _version("llama_cpp_python")},
            )
            write_manifest(staging, manifest)
    return Package(target, manifest)


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
