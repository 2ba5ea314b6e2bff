"""The architecture seam: what every module in `converters.ARCHITECTURES` provides (docs/architecture.md).

An architecture module is found by config.json's `model_type` and is used as a whole, so its interface
is a Protocol over the module itself; tests/converters/test_architecture.py checks every registered one.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gguf

from converters.onnx_layers import Decoder
from converters.tensors import PlannedTensor


class Args(Protocol):
    """The module's `ModelArgs`: hyper-parameters, one clear error per bad key."""

    vocab_size: int
    context_length: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any: ...


@runtime_checkable
class Architecture(Protocol):
    """A module with these names (module functions are attributes, so a module satisfies it)."""

    GGUF_ARCH: gguf.MODEL_ARCH  # the module's own; `ModelArgs.gguf_arch` may override it per checkpoint
    IGNORED_TENSORS: tuple[str, ...]  # checkpoint tensors no output needs (suffixes)
    ModelArgs: type[Args]

    def write_hparams(self, args: Any, writer: gguf.GGUFWriter) -> None:
        """The GGUF key/values, through gguf-py's typed writer."""

    def tensor_plan(self, args: Any, present: set[str]) -> list[PlannedTensor]:
        """Every output tensor: its GGUF name, its checkpoint sources with the shapes the config implies, and
        a pure function that builds it."""

    def build_onnx(self, args: Any, d: Decoder, present: set[str]) -> None:
        """The ONNX decoder graph, from converters/onnx_layers.py's blocks."""
