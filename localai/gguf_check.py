"""Refuse a GGUF file that would hang gguf-py or kill the process in llama.cpp, with one line naming why.

llama.cpp reports most bad metadata as a load error, which localai shows, but some values end the whole
process instead: a GGML_ASSERT aborts (SIGABRT) and a tensor it uses without checking segfaults, with
nothing on stderr. gguf-py's reader trusts the counts a file declares: past the end of the file it raises
IndexError, or loops forever on an array of numbers. Every check below guards against one of these, seen
with llama-cpp-python 0.3.36 (src/llama-model.cpp load_hparams, src/llama-vocab.cpp, ggml-cpu/ops.cpp's
norms, src/models/mamba-base.cpp); values that llama.cpp refuses by itself are left to it.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf

from localai.errors import PackageError
from localai.units import shown

MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")  # any other string fails an assert
# sane bounds, far above real files (thousands of tensors, dozens of kvs): gguf-py walks each in Python
MAX_TENSORS = 1_000_000
MAX_KVS = 100_000
# gguf-py builds Python objects for every array element (about 20 µs and 700 bytes each): this bounds its time
# and memory while leaving room for 4x the largest vocabularies (262k tokens, with their scores and types)
MAX_ARRAY_ELEMENTS = 1 << 22
CONV_BIAS_ARCHS = ("nemotron_h", "nemotron_h_moe")  # their graph adds ssm_conv1d.bias without a null check

_HEADER = struct.Struct("<4sIQQ")  # magic, version, tensor count, kv count
_MIN_KV = 8 + 4 + 1  # key length, value type, the smallest value
_MIN_TENSOR_INFO = 8 + 4 + 4 + 8  # name length, dimension count, type, offset
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType -> bytes
_STRING, _ARRAY = 8, 9
_Lookup = Callable[[str], Any]  # a metadata key -> its value, None when absent
_READER_ERRORS = (ValueError, IndexError, KeyError, OverflowError, MemoryError, TypeError, struct.error)


class _Malformed(Exception):
    """The file's layout contradicts itself; the message says where."""


def check_gguf(path: Path) -> gguf.GGUFReader:
    """The metadata of `path`, read by gguf-py once its declared sizes are known to fit, and checked for values
    that crash llama.cpp. Returns the reader so that the caller parses the file once (gguf-py is slow)."""
    try:
        with path.open("rb") as file:
            if os.fstat(file.fileno()).st_size < _HEADER.size:  # mmap refuses an empty file
                raise _Malformed(f"it has {os.fstat(file.fileno()).st_size} bytes, fewer than a GGUF header")
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _check_layout(data)
        reader = gguf.GGUFReader(path)
    except _Malformed as exc:
        raise PackageError(f"{path.name} is not a readable GGUF file: {exc}") from None
    except _READER_ERRORS as exc:  # what gguf-py raises on what the walk above does not cover
        raise PackageError(f"{path.name} is not a readable GGUF file: {str(exc) or type(exc).__name__}") from None
    except OSError as exc:
        raise PackageError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    _check_metadata(reader, path.name)
    return reader


# --- layout: every declared count fits in the file -----------------------------------------------------


class _Cursor:
    """Little-endian reads from `data` that refuse to go past its end."""

    def __init__(self, data: mmap.mmap | bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def skip(self, n: int, what: str) -> int:
        left = len(self.data) - self.pos
        if n > left:
            raise _Malformed(f"{what} declares {n} bytes, the file has {left} left")
        self.pos += n
        return self.pos - n

    def u32(self, what: str) -> int:
        return int(struct.unpack_from("<I", self.data, self.skip(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack_from("<Q", self.data, self.skip(8, what))[0])

    def string(self, what: str) -> bytes:
        n = self.u64(what)
        start = self.skip(n, what)
        return bytes(self.data[start:start + min(n, 60)])  # enough to name it


def _check_layout(data: mmap.mmap | bytes) -> None:
    """Walk the header, kvs and tensor infos, checking each length against the bytes left (gguf-py does not)."""
    magic, version, n_tensors, n_kv = _HEADER.unpack_from(data)
    if magic != b"GGUF":
        raise _Malformed("it does not start with the GGUF magic")
    if version not in (2, 3):
        raise _Malformed(f"GGUF version {version} is not one llama.cpp reads (2 or 3)")
    room = len(data) - _HEADER.size
    for count, what, bound, least in ((n_tensors, "tensors", MAX_TENSORS, _MIN_TENSOR_INFO),
                                      (n_kv, "metadata keys", MAX_KVS, _MIN_KV)):
        if count > bound:
            raise _Malformed(f"its header declares {count} {what} (at most {bound})")
        if count * least > room:
            raise _Malformed(f"its header declares {count} {what}, more than its {room} bytes can hold")
    cursor, elements = _Cursor(data, _HEADER.size), 0
    for i in range(n_kv):
        key = repr(cursor.string(f"the key of metadata entry {i}").decode("utf-8", "replace"))
        elements += _skip_value(cursor, cursor.u32(key), key)
        if elements > MAX_ARRAY_ELEMENTS:
            raise _Malformed(f"its arrays hold more than {MAX_ARRAY_ELEMENTS} elements in all (at {key})")
    for i in range(n_tensors):
        name = repr(cursor.string(f"the name of tensor {i}").decode("utf-8", "replace"))
        n_dims = cursor.u32(name)
        if n_dims > 4:  # GGML_MAX_DIMS
            raise _Malformed(f"tensor {name} declares {n_dims} dimensions (at most 4)")
        cursor.skip(8 * n_dims + 4 + 8, name)


def _skip_value(cursor: _Cursor, value_type: int, key: str) -> int:
    """Step over one value of `key` (shown as in messages); returns how many array elements it held."""
    if value_type in _SCALAR_SIZES:
        cursor.skip(_SCALAR_SIZES[value_type], key)
        return 0
    if value_type == _STRING:
        cursor.string(key)
        return 0
    if value_type != _ARRAY:
        raise _Malformed(f"{key} has unknown value type {value_type}")
    item_type, n = cursor.u32(key), cursor.u64(key)
    if n > MAX_ARRAY_ELEMENTS:
        raise _Malformed(f"{key} declares {n} elements (at most {MAX_ARRAY_ELEMENTS})")
    if item_type in _SCALAR_SIZES:
        cursor.skip(n * _SCALAR_SIZES[item_type], key)
    elif item_type == _STRING:
        for _ in range(n):
            cursor.skip(cursor.u64(key), key)
    else:  # llama.cpp reads no arrays of arrays either
        raise _Malformed(f"{key} is an array of value type {item_type}, not of numbers or strings")
    return n


# --- metadata: values that llama.cpp asserts on --------------------------------------------------------


def _check_metadata(reader: gguf.GGUFReader, name: str) -> None:
    """Refuse the values seen to abort or crash llama.cpp; `name` is the file's, for the message."""
    def value(key: str) -> Any:
        field = reader.fields.get(key)
        try:
            return field.contents() if field is not None else None
        except UnicodeDecodeError:
            raise PackageError(f"{name}: {key} is not UTF-8 text") from None

    for key, field in reader.fields.items():  # every text field, so that later reads of them cannot fail
        if field.types[:1] == [gguf.GGUFValueType.STRING]:
            value(key)
    arch = str(value("general.architecture") or "")
    problem = (_layers_problem(value, arch) or _experts_problem(value, arch) or _epsilon_problem(reader, value, arch)
               or _vocabulary_problem(reader, value) or _tensor_problem(reader, arch))
    if problem:
        raise PackageError(f"{name}: {problem}")


def _int(raw: Any) -> int | None:
    """An integer value, the largest of a per-layer array; None for anything else (llama.cpp reports those)."""
    if isinstance(raw, list):
        raw = max(raw, default=None) if all(isinstance(v, int) for v in raw) else None
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else None


def _layers_problem(value: _Lookup, arch: str) -> str | None:
    """load_hparams asserts 0 < block_count <= 512 (fixed per-layer arrays), nextn <= block_count and a known
    RoPE scaling type."""
    layers, nextn = _int(value(f"{arch}.block_count")), _int(value(f"{arch}.nextn_predict_layers"))
    rope = value(f"{arch}.rope.scaling.type")
    if layers is not None and not 0 < layers <= MAX_LAYERS:
        return f"{arch}.block_count is {layers}; llama.cpp loads 1 to {MAX_LAYERS} layers"
    if layers is not None and nextn is not None and nextn > layers:
        return f"{arch}.nextn_predict_layers is {nextn}, more than the {layers} layers of {arch}.block_count"
    if isinstance(rope, str) and rope not in ROPE_SCALING_TYPES:
        return f"{arch}.rope.scaling.type is {shown(rope)}; llama.cpp knows {', '.join(ROPE_SCALING_TYPES)}"
    return None


def _experts_problem(value: _Lookup, arch: str) -> str | None:
    """load_hparams' asserts on the expert counts, in its order."""
    count = _int(value(f"{arch}.expert_count")) or 0
    used = _int(value(f"{arch}.expert_used_count")) or 0
    groups = _int(value(f"{arch}.expert_group_count")) or 0
    group_used = _int(value(f"{arch}.expert_group_used_count")) or 0
    if count > MAX_EXPERTS:
        return f"{arch}.expert_count is {count}; llama.cpp loads at most {MAX_EXPERTS} experts"
    if used > count and not count:
        return f"{arch}.expert_used_count is {used}, but the model has no experts ({arch}.expert_count)"
    if used > count or (count and not used):
        return f"{arch}.expert_used_count is {used}; with {count} experts it must be 1 to {count}"
    if groups and groups >= count:
        return f"{arch}.expert_group_count is {groups}, not fewer than the {count} experts"
    if groups > 1 and count % groups:
        return f"{arch}.expert_group_count is {groups}, which does not divide the {count} experts"
    if groups > 1 and not 0 < group_used < groups:
        return f"{arch}.expert_group_used_count is {group_used}; with {groups} groups it must be 1 to {groups - 1}"
    return None


def _epsilon_problem(reader: gguf.GGUFReader, value: _Lookup, arch: str) -> str | None:
    """The CPU norm kernels assert eps >= 0, which a NaN fails too; zero or infinity would make the norm
    meaningless, and the converter refuses them as well."""
    for key in reader.fields:
        if key.startswith(f"{arch}.") and key.endswith("epsilon"):
            raw = value(key)
            for eps in raw if isinstance(raw, list) else [raw]:
                if isinstance(eps, float | int) and not (math.isfinite(eps) and eps > 0):
                    return f"{key} is {eps}; a norm epsilon must be finite and positive"
    return None


def _vocabulary_problem(reader: gguf.GGUFReader, value: _Lookup) -> str | None:
    """llama.cpp asserts that token texts are unique (an empty one reads as "[EMPTY_<id>]"). A BOS or EOS id
    outside the vocabulary does not crash, but llama.cpp silently puts its default in its place (token 11 for
    a BPE vocabulary), so prompts would start, or answers end, with an unrelated token."""
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None or tokens.types != [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING]:
        return None
    seen: dict[bytes, int] = {}
    for token_id, part in enumerate(tokens.data):
        text = bytes(tokens.parts[part]) or b"[EMPTY_%d]" % token_id
        first = seen.setdefault(text, token_id)
        if first != token_id:
            token = shown(text.decode("utf-8", "replace"))
            return (f"tokenizer.ggml.tokens holds {token} twice (ids {first} and {token_id}); "
                    "llama.cpp needs unique tokens")
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        token_id = _int(value(key))
        if token_id is not None and not 0 <= token_id < len(tokens.data):
            return f"{key} is {token_id}, outside the vocabulary of {len(tokens.data)} tokens"
    return None


def _tensor_problem(reader: gguf.GGUFReader, arch: str) -> str | None:
    """Nemotron-H's Mamba-2 layers load ssm_conv1d.bias as optional but add it unconditionally (a segfault)."""
    if arch not in CONV_BIAS_ARCHS:
        return None
    names = {tensor.name for tensor in reader.tensors}
    for tensor in reader.tensors:
        bias = tensor.name.removesuffix(".ssm_conv1d.weight") + ".ssm_conv1d.bias"
        if tensor.name.endswith(".ssm_conv1d.weight") and bias not in names:
            return f"{arch} tensor {bias} is missing; llama.cpp needs it beside {tensor.name}"
    return None
