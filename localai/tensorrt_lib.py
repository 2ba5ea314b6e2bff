"""The TensorRT Python module: TensorRT for RTX (`tensorrt_rtx`, RTX GPUs; builds engines ahead of time
with no GPU at all) or NVIDIA's standard `tensorrt` (data-centre GPUs; builds for the GPU it runs on).

Both expose the same builder, network, ONNX parser and optimization-profile API; the only difference
localai relies on is that TensorRT for RTX can target compute capabilities other than the local GPU's.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

from localai.errors import LocalAIError

MODULES = ("tensorrt_rtx", "tensorrt")
INSTALL_HINT = "pip install 'localai[tensorrt]' (TensorRT for RTX), or NVIDIA's tensorrt package"


# the compute capabilities TensorRT for RTX 1.7 targets: RTX-class GPUs (no data-centre Hopper or Blackwell)
RTX_CAPABILITIES = (75, 80, 86, 89, 120, 121)
_loggers: dict[str, Any] = {}


def load(name: str | None = None) -> ModuleType:
    """The TensorRT module `name` (one of MODULES), or else the first one installed in the order of MODULES."""
    for candidate in (name,) if name else MODULES:
        try:
            return importlib.import_module(candidate)
        except ImportError:
            continue
    if name:
        raise LocalAIError(f"the engine was built by {name}, which is not installed: {INSTALL_HINT}")
    raise LocalAIError(f"TensorRT is not installed: {INSTALL_HINT}")


def installed() -> str | None:
    """The name of the TensorRT module `load()` would return, found without importing it (it is large)."""
    return next((name for name in MODULES if importlib.util.find_spec(name) is not None), None)


def targets_other_gpus(trt: ModuleType) -> bool:
    """Whether this TensorRT can build for chosen compute capabilities (TensorRT for RTX) rather than only
    for the GPU of this machine."""
    return hasattr(trt, "ComputeCapability")


def error_logger(trt: ModuleType) -> Any:
    """The TensorRT logger of this process for module `trt`, keeping the last error (`.last_error`, emptied by
    `.clear()`) for a message of localai's; the rest of TensorRT's log (verbose and repetitive) is dropped.

    One per module and process: TensorRT keeps the first logger it is given while any of its objects lives,
    so a second one would never hear anything (and could be freed while TensorRT still points at it)."""
    if trt.__name__ not in _loggers:

        class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.last_error: str | None = None

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                    self.last_error = " ".join(msg.split())

            def clear(self) -> None:
                self.last_error = None

        _loggers[trt.__name__] = Logger()
    return _loggers[trt.__name__]
