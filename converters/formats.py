"""The output-format seam: what `convert()` asks of GGUF, ONNX and TensorRT alike.

Each format is one module (`to_gguf.py`, `to_onnx.py`, `to_tensorrt.py`) holding a `FORMAT` object with the
`OutputFormat` interface; `OUTPUT_FORMATS` maps the name users type to that module, as `ARCHITECTURES`
does for `model_type`. A new format is one module plus one line there.

The stages, in the order `convert()` runs them:
1. `check(request)`: the options alone, before anything is read (a typo fails in milliseconds);
2. `prepare(arch, args, settings)`: against the checkpoint's hyper-parameters, before anything is hashed
   or staged (GGUF: what its metadata cannot express; TensorRT: the engine's context);
3. `label(settings)`: the default package name's suffix (`q4_k_m`, `onnx-int4`, `trt-fp16`);
4. `write(job, settings)`: the artifacts in the staging folder, and the manifest's graph and versions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from converters.architecture import Architecture
from converters.checkpoint import Checkpoint
from localai.errors import ConversionError
from localai.package import Artifact, file_sha256

# the name of --to -> module in this package
OUTPUT_FORMATS: dict[str, str] = {
    "gguf": "to_gguf",
    "onnx": "to_onnx",
    "tensorrt": "to_tensorrt",
}

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Request:
    """The format options a user gave (None: not given); each format refuses those it does not take."""

    quant: str | None = None
    flavor: str | None = None
    block_size: int | None = None
    compute_capabilities: list[int] | None = None
    max_context: int | None = None
    max_prefill: int | None = None
    threads: int | None = None  # llama.cpp's quantizer

    @property
    def engine_options(self) -> bool:
        return self.compute_capabilities is not None or self.max_context is not None or self.max_prefill is not None


@dataclass(frozen=True)
class Job:
    """What a writer needs: the checked checkpoint, its plan and vocabulary, and where to write."""

    staging: Path
    package_name: str
    source: Path  # the checkpoint folder (tokenizer files are copied from it)
    arch: Architecture
    args: Any  # its ModelArgs
    plan: list[Any]
    ckpt: Checkpoint
    vocab: Any  # converters.vocab.GGUFVocab
    progress: Progress | None = None

    def report(self, step: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(step, done, total)


@dataclass(frozen=True)
class Written:
    """A writer's result: the artifacts it staged, and the manifest's `graph` and converter versions."""

    artifacts: list[Artifact]
    graph: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class OutputFormat(Protocol):
    """One output format (see the module docstring for the stages)."""

    name: str
    keeps_mtp: bool  # whether a checkpoint's multi-token-prediction head can go into it

    def check(self, request: Request) -> Any: ...

    def prepare(self, arch: Architecture, args: Any, settings: Any) -> Any: ...

    def label(self, settings: Any) -> str: ...

    def write(self, job: Job, settings: Any) -> Written: ...


def output_format(name: str) -> OutputFormat:
    """The format `--to NAME` names."""
    if name not in OUTPUT_FORMATS:
        raise ConversionError(f"unknown output format {name!r}; available: {', '.join(OUTPUT_FORMATS)}")
    module = importlib.import_module(f"converters.{OUTPUT_FORMATS[name]}")
    fmt: OutputFormat = module.FORMAT
    return fmt


def staged_artifact(path: Path, fmt: str, quant: str) -> Artifact:
    """The manifest entry of a file a writer staged: its name, size and hash."""
    return Artifact(path.name, fmt, quant, path.stat().st_size, file_sha256(path))


def installed_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
