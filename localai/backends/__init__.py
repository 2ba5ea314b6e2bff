"""Runtime backends, chosen by artifact format. A new backend is one module plus one line in BACKENDS."""

from __future__ import annotations

import importlib

from localai.backends.base import Backend, BackendFactory
from localai.errors import BackendError

# artifact format -> "module:class"
BACKENDS: dict[str, str] = {
    "gguf": "localai.backends.llama_cpp:LlamaCppBackend",
    "onnx": "localai.backends.onnx_runtime:OnnxRuntimeBackend",
    "tensorrt": "localai.backends.tensorrt:TensorRTBackend",
}


def backend_for(fmt: str) -> BackendFactory:
    """The backend class that runs artifacts of format `fmt`."""
    try:
        module_name, class_name = BACKENDS[fmt].split(":")
    except KeyError:
        raise BackendError(f"no backend runs {fmt!r} artifacts (available: {', '.join(BACKENDS)})") from None
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["BACKENDS", "Backend", "BackendFactory", "backend_for"]
