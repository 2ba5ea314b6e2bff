"""Read a Hugging Face checkpoint folder: config.json and safetensors weights, one tensor at a time.

Weights are memory-mapped and read tensor by tensor; after a tensor is used its pages are dropped from
the process (``MADV_DONTNEED``), so resident memory stays at about one tensor whatever the model size.
The safetensors header is parsed here rather than through the `safetensors` package because its numpy
loader has no bfloat16, the dtype most checkpoints ship in.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localai import hub
from localai.errors import ConversionError
from localai.jsonfile import read_json_object

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_HEADER_LIMIT = 100 * 1024 * 1024  # the safetensors spec caps the JSON header at 100 MB
_MAX_RANK = 8  # a weight has 1-4 dimensions; a forged one thousands
_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits; widened to float32 on load
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def read_json(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in `path`, or one clear `ConversionError`."""
    return read_json_object(path, what, ConversionError)


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor lies: file, dtype name, shape and absolute byte range."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


class SafetensorsFile:
    """A memory-mapped safetensors file with a validated header."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tensors: dict[str, TensorRef] = {}
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ConversionError(f"{path.name} is truncated: no safetensors header")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > _HEADER_LIMIT or 8 + header_len > size:  # never echo the bytes: it may be any file
                raise ConversionError(f"{path.name} is not a safetensors file, or is truncated (its header length "
                                      "is larger than the file or the format allows)")
            try:
                header = json.loads(fh.read(header_len))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                raise ConversionError(f"{path.name} has a corrupt safetensors header: {exc}") from exc
        if not isinstance(header, dict):
            raise ConversionError(f"{path.name} has a corrupt safetensors header")
        base = 8 + header_len
        for name, info in header.items():
            if name == "__metadata__":
                continue
            self.tensors[name] = self._parse_entry(name, info, base, size)
        # the format stores tensors back to back; overlapping ranges mean a forged header
        ranges = sorted((ref.start, ref.end) for ref in self.tensors.values())
        for (_, end), (start, _) in itertools.pairwise(ranges):
            if start < end:
                raise ConversionError(f"{path.name} has a corrupt safetensors header: tensor byte ranges overlap")
        with path.open("rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size > 0 else None

    def _parse_entry(self, name: str, info: Any, base: int, size: int) -> TensorRef:
        malformed = ConversionError(f"{self.path.name}: malformed header entry for tensor {name!r}")
        if not isinstance(info, dict):
            raise malformed
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not (isinstance(dtype, str) and isinstance(shape, list) and len(shape) <= _MAX_RANK
                and isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(x) for x in [*shape, *offsets])):
            raise malformed
        shape = tuple(shape)
        begin, end = offsets
        if dtype not in _DTYPES:
            raise ConversionError(f"{self.path.name}: tensor {name!r} has unsupported dtype {dtype}")
        expected = math.prod(shape) * _DTYPES[dtype].itemsize  # Python integers: a forged shape cannot overflow
        if end - begin != expected:
            raise ConversionError(
                f"{self.path.name}: tensor {name!r} byte range does not match its shape {list(shape)}"
            )
        if base + end > size:
            raise ConversionError(
                f"{self.path.name} is truncated: tensor {name!r} ends past the end of the file"
            )
        return TensorRef(self.path, dtype, shape, base + begin, base + end)

    def read(self, ref: TensorRef) -> np.ndarray:
        """The tensor as float32 (floats) or its own integer dtype, viewing the map where possible."""
        np_dtype = _DTYPES[ref.dtype]
        count = (ref.end - ref.start) // np_dtype.itemsize
        if count == 0 or self._map is None:
            return np.zeros(ref.shape, dtype=np.float32)
        raw = np.frombuffer(self._map, dtype=np_dtype, count=count, offset=ref.start)
        if ref.dtype == "BF16":
            widened = raw.astype(np.uint32)
            widened <<= 16
            return widened.view(np.float32).reshape(ref.shape)
        if ref.dtype in ("F16", "F64"):
            return raw.astype(np.float32).reshape(ref.shape)
        return raw.reshape(ref.shape)

    def release(self, ref: TensorRef) -> None:
        """Drop the pages of `ref` from this process; the kernel keeps them in its page cache."""
        if self._map is None or ref.end <= ref.start:
            return
        start = ref.start - ref.start % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, start, ref.end - start)

    def close(self) -> None:
        if self._map is not None:
            # arrays still viewing the map keep it alive; it is unmapped when the last one goes
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Checkpoint:
    """A Hugging Face model folder: `config`, the tensor index, and tensor access by name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = read_json(root / "config.json", "config.json")
        self.weight_files = _find_weight_files(root)
        self._files: dict[Path, SafetensorsFile] = {}
        self.tensors: dict[str, TensorRef] = {}
        try:
            for path in self.weight_files:
                sf = SafetensorsFile(path)
                self._files[path] = sf
                for name, ref in sf.tensors.items():
                    if name in self.tensors:
                        raise ConversionError(f"tensor {name!r} appears in two weight files")
                    self.tensors[name] = ref
            self._check_index()
        except BaseException:
            self.close()
            raise

    def _check_index(self) -> None:
        index_path = self.root / hub.INDEX_NAME
        if not index_path.is_file():
            return
        weight_map = read_json(index_path, hub.INDEX_NAME)["weight_map"]  # checked by _find_weight_files
        for name, filename in weight_map.items():
            ref = self.tensors.get(name)
            if ref is None or ref.file.name != filename:
                raise ConversionError(f"tensor {name!r} listed in the index is missing from {filename}")

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def load(self, name: str) -> np.ndarray:
        """Read tensor `name` (float32 for float dtypes)."""
        ref = self.tensors[name]
        return self._files[ref.file].read(ref)

    def release(self, name: str) -> None:
        ref = self.tensors[name]
        self._files[ref.file].release(ref)

    def close(self) -> None:
        for sf in self._files.values():
            sf.close()
        self._files.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _find_weight_files(root: Path) -> list[Path]:
    index_path = root / hub.INDEX_NAME
    if index_path.is_file():
        files = [root / name for name in hub.index_shards(index_path, ConversionError)]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ConversionError(f"weight shards listed in the index are missing: {', '.join(missing)}")
        return files
    # the transformers layout first: other *.safetensors beside it (e.g. Mistral's consolidated.safetensors)
    # hold the same weights under other names
    for pattern in ("model.safetensors", "model-*-of-*.safetensors", "*.safetensors"):
        files = sorted(root.glob(pattern))
        odd = [f.name for f in files if not f.is_file()]  # a FIFO would block the read forever
        if odd:
            raise ConversionError(f"{odd[0]} in {root} is not a regular file")
        if files:
            return files
    pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ConversionError(
            f"{root} holds only pickled weights ({', '.join(pickles)}); localai never unpickles weights. "
            "Re-save the model as safetensors (save_pretrained(..., safe_serialization=True))."
        )
    raise ConversionError(f"no *.safetensors weights in {root}")
