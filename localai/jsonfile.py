"""Read JSON objects from files with one clear error per failure.

Such files come from strangers (checkpoints, packages, archives), so only regular files are read (a FIFO
would block forever), of a bounded size, and every way the parser can fail (bad UTF-8, bad JSON, nesting
deep enough to exhaust the stack, an integer of thousands of digits) is the caller's one error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localai.errors import LocalAIError

MAX_JSON_BYTES = 64 << 20  # a config, manifest or index is kilobytes; a tokenizer.json tens of megabytes


def read_json_object(path: Path, what: str, error: type[LocalAIError] = LocalAIError, *,
                     max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in `path`; a missing or non-regular file, too many bytes, bad JSON or a non-object
    raises `error` naming `what`."""
    return parse_json_object(read_bounded(path, what, error, max_bytes=max_bytes), what, error, source=str(path))


def read_json(path: Path, what: str, error: type[LocalAIError] = LocalAIError, *,
              max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in `path` (any type), with the same checks as `read_json_object`."""
    return _parsed(read_bounded(path, what, error, max_bytes=max_bytes), what, error, f" ({path})")


def read_bounded(path: Path, what: str, error: type[LocalAIError] = LocalAIError, *, max_bytes: int) -> bytes:
    """The bytes of the regular file `path`, at most `max_bytes` of them, or `error` naming `what`."""
    if not path.is_file():  # follows links; false for folders, FIFOs and devices
        raise error(f"{what} not found: {path}" if not path.exists() else f"{what} is not a regular file: {path}")
    if path.stat().st_size > max_bytes:
        raise error(f"{what} is implausibly large ({path.stat().st_size} bytes, at most {max_bytes}): {path}")
    return path.read_bytes()


def parse_json_object(raw: bytes, what: str, error: type[LocalAIError] = LocalAIError, *,
                      source: str = "") -> dict[str, Any]:
    """The JSON object in `raw`, or `error` naming `what` (read from `source`)."""
    where = f" ({source})" if source else ""
    data = _parsed(raw, what, error, where)
    if not isinstance(data, dict):
        raise error(f"{what} must hold a JSON object{where}")
    return data


def _parsed(raw: bytes, what: str, error: type[LocalAIError], where: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text{where}: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise error(f"{what} is not valid JSON{where}: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python converts
        raise error(f"{what} is not valid JSON{where}: {exc}") from None
