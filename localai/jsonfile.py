"""Read JSON objects from files with one clear error per failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localai.errors import LocalAIError


def read_json_object(path: Path, what: str, error: type[LocalAIError] = LocalAIError) -> dict[str, Any]:
    """The JSON object in `path`; a missing file, bad JSON or a non-object raises `error` naming `what`."""
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} is not valid JSON ({path}): {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{what} must hold a JSON object: {path}")
    return data
