"""Load a model (package folder, manifest, store name or bare GGUF) onto a backend, and prompt it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localai import chat as chat_engine
from localai import store
from localai.backends import Backend, backend_for
from localai.chat_format import ChatFormat
from localai.chat_template import loading_weights
from localai.errors import PackageError
from localai.events import Event, Final, collect
from localai.options import ChatOptions, package_options
from localai.package import MANIFEST_NAME, Artifact, Manifest, Package
from localai.turn_state import DEFAULT_SNAPSHOTS, TurnStates
from localai.units import shown

DEFAULT_CONTEXT = 4096


@dataclass
class Model:
    """A package bound to a running backend, with the format its conversations are written in and the
    options its requests start from (`defaults`, from the package's generation defaults)."""

    package: Package
    backend: Backend
    format: ChatFormat
    defaults: ChatOptions
    turn_states: TurnStates = field(default_factory=TurnStates)  # snapshots for multi-turn chat

    @classmethod
    def bind(cls, package: Package, backend: Backend, turn_states: TurnStates | None = None) -> Model:
        """`package` running on `backend`, in the format and with the defaults its manifest describes."""
        defaults = package_options(package.manifest.generation_defaults)
        return cls(package, backend, ChatFormat.of(package.manifest, backend), defaults, turn_states or TurnStates())

    @property
    def manifest(self) -> Manifest:
        return self.package.manifest

    def stream_chat(self, messages: list[dict[str, Any]], options: ChatOptions | None = None, *,
                    cancel: threading.Event | None = None, **changes: Any) -> Iterator[Event]:
        """Answer a conversation, streaming events (localai/events.py), with `options` (default: the
        model's `defaults`) and `changes` to them by name (`ChatOptions.changed`: think=False,
        reasoning_budget=128, temperature=0, ...); setting `cancel` ends the answer early."""
        opts = (options or self.defaults).changed(**changes)
        states = self.turn_states if self.turn_states.capacity else None
        return chat_engine.chat(self.backend, self.format, messages, opts, turn_states=states, cancel=cancel)

    def chat(self, messages: list[dict[str, Any]], options: ChatOptions | None = None, *,
             cancel: threading.Event | None = None, **changes: Any) -> Final:
        """`stream_chat` run to its end: the final event."""
        return collect(self.stream_chat(messages, options, cancel=cancel, **changes))

    def stream_complete(self, text: str, options: ChatOptions | None = None, *, cancel: threading.Event | None = None,
                        **changes: Any) -> Iterator[Event]:
        """Continue `text` as is, streaming: no chat template, no reasoning handling."""
        opts = (options or self.defaults).changed(**changes)
        return chat_engine.complete(self.backend, self.format, text, opts, cancel=cancel)

    def complete(self, text: str, options: ChatOptions | None = None, *, cancel: threading.Event | None = None,
                 **changes: Any) -> Final:
        """`stream_complete` run to its end: the final event."""
        return collect(self.stream_complete(text, options, cancel=cancel, **changes))

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True, **variables: Any) -> str:
        """The conversation as the model's chat template writes it (fallback template if it has none)."""
        return self.format.render(messages, add_generation_prompt=add_generation_prompt, **variables)

    def tokenize_prompt(self, text: str) -> list[int]:
        return self.format.tokenize_prompt(text)

    @property
    def bos_id(self) -> int | None:
        return self.format.bos_id

    def close(self) -> None:
        self.backend.close()


def load(model: str | Path | Package, *, n_ctx: int | None = None, n_threads: int | None = None,
         kv_cache: str | None = None, device: str = "auto", turn_snapshots: int = DEFAULT_SNAPSHOTS) -> Model:
    """Load `model`: a package folder, its manifest.json, a store name, a bare .gguf file, or a Package
    already opened (`resolve`).

    `n_ctx` defaults to the smallest of 4096, the model's trained context (hybrid GGUFs declare 2^20
    tokens, which must never be allocated) and a TensorRT engine's maximum. llama.cpp's attention cache
    (`kv_cache`) is float32 for float32 artifacts, which exist for exactness, and float16 otherwise; ONNX
    graphs and TensorRT engines keep their states in the graph's types.
    `device`: auto, cpu, cuda or tensorrt (what the backend and its installed runtime offer).
    `turn_snapshots`: backend states kept at chat turn boundaries so that the next turn processes only
    its new tokens (0 turns this off; see localai/turn_state.py).
    """
    package = model if isinstance(model, Package) else resolve(model)
    artifact = _runnable_artifact(package)
    for part in package.manifest.artifacts:  # an ONNX graph's weights are a second file
        _check_present(package, part)
    # a TensorRT engine serves a context fixed when it was built
    limit = package.manifest.graph.get("tensorrt", {}).get("max_context", DEFAULT_CONTEXT)
    context = n_ctx if n_ctx is not None else min(DEFAULT_CONTEXT, package.manifest.context_length, limit)
    cache = kv_cache or ("f16" if artifact.format == "gguf" and artifact.quant != "f32" else "f32")
    with loading_weights():  # a template rendering on another thread meanwhile is not charged for this memory
        backend = backend_for(artifact.format)(package, artifact, n_ctx=context, n_threads=n_threads,
                                               kv_cache=cache, device=device)
    try:
        return Model.bind(package, backend, TurnStates(turn_snapshots))
    except BaseException:  # a bad template or generation default: the backend is not left open
        backend.close()
        raise


def _check_present(package: Package, artifact: Artifact) -> None:
    path = package.path_of(artifact)
    if not path.is_file():
        raise PackageError(f"package {package.manifest.name} lacks its artifact {artifact.path}")
    if path.stat().st_size != artifact.bytes:  # cheap; the full hash check is `localai verify`'s job
        raise PackageError(f"package {package.manifest.name}: {artifact.path} has {path.stat().st_size} bytes, "
                           f"the manifest says {artifact.bytes} (incomplete or corrupt copy)")


def resolve(model: str | Path) -> Package:
    """The package that `model` names."""
    try:
        return _resolve(model)
    except OSError as exc:  # a name too long for a path, a folder that cannot be read
        raise PackageError(f"no model {shown(str(model))}: {exc.strerror or exc}") from None


def _resolve(model: str | Path) -> Package:
    path = Path(model).expanduser()
    if path.is_dir():
        return Package.open(path)
    if path.is_file() and path.name == MANIFEST_NAME:
        return Package.open(path.parent)
    if path.is_file():
        return bare_gguf_package(path)
    if isinstance(model, str) and "/" not in model and (store.models_dir() / model).is_dir():
        return Package.open(store.package_path(model))
    raise PackageError(f"no model {str(model)!r}: not a file, a package folder, or a name in {store.models_dir()}")


def _runnable_artifact(package: Package) -> Artifact:
    from localai.backends import BACKENDS

    for artifact in package.manifest.artifacts:
        if artifact.format in BACKENDS:
            return artifact
    formats = ", ".join(a.format for a in package.manifest.artifacts) or "none"
    raise PackageError(f"package {package.manifest.name} has no artifact a backend can run (formats: {formats})")


def bare_gguf_package(path: Path) -> Package:
    """A package description for a GGUF file without a localai manifest, from the file's own metadata.

    The file is checked first (localai/gguf_check.py): a third-party GGUF can hold values on which llama.cpp
    aborts the whole process instead of reporting an error."""
    import gguf

    from localai.gguf_check import check_gguf

    if path.suffix == ".onnx":
        raise PackageError(f"an ONNX model runs from its package: pass the folder {path.parent}")

    reader = check_gguf(path)

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    arch = str(field("general.architecture") or "unknown")
    # display fields only: odd values must not refuse a file llama.cpp may well run
    try:
        quant = gguf.LlamaFileType(field("general.file_type")).name.removeprefix("MOSTLY_").lower()
    except (ValueError, TypeError):
        quant = "unknown"
    context = field(f"{arch}.context_length")
    def token_text(id_key: str) -> str | None:
        tokens, token_id = reader.fields.get("tokenizer.ggml.tokens"), field(id_key)
        if tokens is None or not isinstance(token_id, int) or not 0 <= token_id < len(tokens.data):
            return None
        return bytes(tokens.parts[tokens.data[token_id]]).decode("utf-8", "replace")  # GGUF does not enforce UTF-8

    template = field("tokenizer.chat_template")

    manifest = Manifest(
        name=path.stem,
        architecture=arch,
        artifacts=[Artifact(path.name, "gguf", quant, path.stat().st_size, "")],
        context_length=context if isinstance(context, int) and context > 0 else DEFAULT_CONTEXT,
        tokenizer={
            "bos_token": token_text("tokenizer.ggml.bos_token_id"),
            "eos_token": token_text("tokenizer.ggml.eos_token_id"),
            "add_bos": bool(field("tokenizer.ggml.add_bos_token")),
        },
        chat_template=template if isinstance(template, str) else None,
        source={"kind": "gguf", "path": str(path.resolve())},
    )
    return Package(path.parent.resolve(), manifest)
