"""The contract between architecture modules and output writers: a plan of output tensors.

An architecture module maps a checkpoint to a list of `OutputTensor`s. Each names the checkpoint
tensors it reads (with the shape the config implies) and a pure numpy function that builds the output
array. Writers call that function twice: once with shape-only stand-ins to lay out the file header,
once with real data to write it, so no more than one tensor is ever materialised. A `StackedTensor`
(a MoE layer's experts in one 3-D tensor) is written part by part instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import gguf
import numpy as np

from localai.errors import ConversionError

Loader = Callable[[str], np.ndarray]
Builder = Callable[[Loader], np.ndarray]


@dataclass(frozen=True)
class OutputTensor:
    """One tensor of the converted model.

    `sources` maps each checkpoint tensor that `build` reads to the shape the config implies for it.
    `keep_f32` marks tensors the runtime needs in float32 whatever the requested type.
    """

    name: str
    sources: dict[str, tuple[int, ...]]
    build: Builder
    keep_f32: bool = False


@dataclass(frozen=True)
class StackedTensor:
    """An output tensor that stacks checkpoint tensors `parts` (each of `part_shape`) along a new first axis,
    as llama.cpp keeps a layer's experts in one 3-D tensor. Writers write it part by part, so memory holds
    one part, never the stack."""

    name: str
    parts: tuple[str, ...]
    part_shape: tuple[int, ...]
    active: int | None = None  # parts one token uses (a layer's routed top-k experts); None: all
    keep_f32: bool = False

    @property
    def sources(self) -> dict[str, tuple[int, ...]]:
        return dict.fromkeys(self.parts, self.part_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.parts), *self.part_shape)


PlannedTensor = OutputTensor | StackedTensor


def shape_only(shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
    """An array of `shape` that occupies one element of memory (all strides zero)."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype=dtype), shape, (0,) * len(shape), writeable=False)


class NameMap:
    """Checkpoint tensor name -> GGUF tensor name, through gguf-py's declarative tables."""

    def __init__(self, arch: gguf.MODEL_ARCH, n_blocks: int) -> None:
        self._map = gguf.get_tensor_name_map(arch, n_blocks)

    def __call__(self, hf_name: str) -> str:
        name = self._map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConversionError(f"no GGUF name for checkpoint tensor {hf_name!r}")
        return name


def direct(gguf_name: str, hf_name: str, shape: tuple[int, ...], *, keep_f32: bool = False) -> OutputTensor:
    """An output tensor that is a checkpoint tensor unchanged."""
    return OutputTensor(gguf_name, {hf_name: shape}, lambda load: load(hf_name), keep_f32)


def transformed(
    gguf_name: str,
    hf_name: str,
    shape: tuple[int, ...],
    fn: Callable[[np.ndarray], np.ndarray],
    *,
    keep_f32: bool = False,
) -> OutputTensor:
    """An output tensor computed from one checkpoint tensor by `fn`."""
    return OutputTensor(gguf_name, {hf_name: shape}, lambda load: fn(load(hf_name)), keep_f32)


def parameter_counts(plan: Iterable[PlannedTensor], shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Parameters the converted model holds ("total") and reads for one token ("active": a MoE layer's
    routed experts count only as many as a token uses)."""
    total = active = 0
    for tensor in plan:
        size = sum(math.prod(shapes[source]) for source in tensor.sources)
        total += size
        used = tensor.active if isinstance(tensor, StackedTensor) else None
        active += size if used is None else size * used // len(tensor.parts)
    return {"total": total, "active": active}


def check_sources(plan: Iterable[PlannedTensor], shapes: dict[str, tuple[int, ...]], ignored: tuple[str, ...],
                  dropped: Iterable[str] = ()) -> None:
    """Check that the checkpoint has every tensor the plan reads, with the shape the config implies,
    and nothing the plan would silently drop (but the `dropped` tensors the user chose to leave out)."""
    wanted: dict[str, tuple[int, ...]] = {}
    for tensor in plan:
        wanted.update(tensor.sources)
    for name, shape in wanted.items():
        if name not in shapes:
            raise ConversionError(f"checkpoint lacks tensor {name!r} that config.json implies")
        if tuple(shapes[name]) != tuple(shape):
            raise ConversionError(
                f"tensor {name!r} has shape {list(shapes[name])} but config.json implies {list(shape)}"
            )
    left_out = set(dropped)
    unused = sorted(n for n in shapes if n not in wanted and n not in left_out and not n.endswith(ignored))
    if unused:
        more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
        raise ConversionError(f"checkpoint tensor {unused[0]!r}{more} does not fit the config; refusing to drop it")


F16_MAX = float(np.finfo(np.float16).max)


def as_float16(name: str, data: np.ndarray, instead: str) -> np.ndarray:
    """`data` as float16, refusing values beyond its range (they would silently become inf)."""
    if data.size and float(np.abs(data).max()) > F16_MAX:
        raise ConversionError(f"tensor {name} holds values beyond float16's range; convert to {instead}")
    return np.ascontiguousarray(data, dtype=np.float16)
