"""Find a checkpoint: a local folder, or a Hugging Face repo id fetched through `localai.hub`.

The network is used only when the user names a repo id that is not a local folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localai import hub
from localai.errors import ConversionError


@dataclass(frozen=True)
class Source:
    """A checkpoint folder on disk and where it came from."""

    path: Path
    display_name: str
    provenance: dict[str, Any]


def resolve_source(src: str) -> Source:
    """A local checkpoint folder, or a Hugging Face repo id (`owner/name[@revision]`) in the cache."""
    path = Path(src).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConversionError(f"{src} is not a folder (expected a Hugging Face checkpoint folder)")
        return Source(path.resolve(), path.resolve().name, {"kind": "local", "path": str(path.resolve())})
    if not hub.is_repo_id(src):
        raise ConversionError(f"{src} is neither a local folder nor a Hugging Face repo id (owner/name)")
    snapshot = hub.pull(src)
    return Source(snapshot.path, snapshot.repo_id.split("/")[-1],
                  {"kind": "huggingface", "repo_id": snapshot.repo_id, "revision": snapshot.revision})
