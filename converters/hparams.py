"""Typed access to config.json values with one clear error per missing or malformed key."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from localai.errors import ConversionError
from localai.units import shown

T = TypeVar("T")
N = TypeVar("N", int, float)
_MISSING: Any = object()
MAX_INT = 2**31 - 1
MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS (it aborts on more)


def hparam(config: dict[str, Any], *keys: str, cast: Callable[[Any], T] = int, default: Any = _MISSING) -> T:
    """The first of `keys` present (and not null) in `config`, converted by `cast`.

    Several keys cover the names one value has had across releases (e.g. `n_groups` / `mamba_n_groups`).
    """
    for key in keys:
        value = config.get(key)
        if value is None:
            continue
        if cast is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConversionError(f"config.json: {key!r} must be an integer, got {shown(value)}")
        if cast is int and abs(value) > MAX_INT:  # GGUF and ONNX store them in 32 bits
            raise ConversionError(f"config.json: {key!r} is out of range ({shown(value)}; at most {MAX_INT})")
        if cast is float and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not math.isfinite(value)):
            raise ConversionError(f"config.json: {key!r} must be a finite number, got {shown(value)}")
        try:
            return cast(value)
        except (TypeError, ValueError) as exc:
            raise ConversionError(f"config.json: {key!r} has an invalid value {shown(value)}") from exc
    if default is _MISSING:
        raise ConversionError(f"config.json lacks {keys[0]!r}")
    return default


def flag(value: Any) -> bool:
    """A JSON true/false (a string such as "false" would be truthy): the `cast` of boolean hparams."""
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value


def positive(name: str, value: N) -> N:
    if value <= 0:
        raise ConversionError(f"config.json: {name!r} must be positive, got {value}")
    return value


def layer_count(count: int) -> int:
    """A declared number of decoder layers (an MTP head included), at most `MAX_LAYERS`: checked before any
    per-layer work, which a forged count would otherwise multiply."""
    if count > MAX_LAYERS:
        raise ConversionError(f"config.json declares {count} layers; localai converts at most {MAX_LAYERS} "
                              "(llama.cpp's limit, an MTP head included)")
    return positive("num_hidden_layers", count)


def rope_settings(config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(rope theta, scaling dict) from either the transformers 5.x `rope_parameters` or the 4.x keys."""
    params = config.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise ConversionError("config.json: 'rope_parameters' must be an object")
    theta = hparam({"rope_theta": params.get("rope_theta", config.get("rope_theta"))}, "rope_theta", cast=float,
                   default=10000.0)
    scaling = config.get("rope_scaling") or {}
    if not isinstance(scaling, dict):
        raise ConversionError("config.json: 'rope_scaling' must be an object")
    return positive("rope_theta", theta), scaling | {k: v for k, v in params.items() if k != "rope_theta"}
