"""Typed access to config.json values with one clear error per missing or malformed key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from localai.errors import ConversionError

T = TypeVar("T")
_MISSING: Any = object()


def hparam(config: dict[str, Any], *keys: str, cast: Callable[[Any], T] = int, default: Any = _MISSING) -> T:
    """The first of `keys` present (and not null) in `config`, converted by `cast`.

    Several keys cover the names one value has had across releases (e.g. `n_groups` / `mamba_n_groups`).
    """
    for key in keys:
        value = config.get(key)
        if value is None:
            continue
        if cast is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConversionError(f"config.json: {key!r} must be an integer, got {value!r}")
        try:
            return cast(value)
        except (TypeError, ValueError) as exc:
            raise ConversionError(f"config.json: {key!r} has an invalid value {value!r}") from exc
    if default is _MISSING:
        raise ConversionError(f"config.json lacks {keys[0]!r}")
    return default


def flag(value: Any) -> bool:
    """A JSON true/false (a string such as "false" would be truthy): the `cast` of boolean hparams."""
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value


def positive(name: str, value: int) -> int:
    if value <= 0:
        raise ConversionError(f"config.json: {name!r} must be positive, got {value}")
    return value


def rope_settings(config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(rope theta, scaling dict) from either the transformers 5.x `rope_parameters` or the 4.x keys."""
    params = config.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise ConversionError("config.json: 'rope_parameters' must be an object")
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    scaling = dict(config.get("rope_scaling") or {})
    scaling.update({k: v for k, v in params.items() if k != "rope_theta"})
    return float(theta), scaling
