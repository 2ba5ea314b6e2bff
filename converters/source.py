"""Find a checkpoint: a local folder, or a Hugging Face repo fetched through `localai.hub`.

The network is used only when the user asks for a download by name: `hf:owner/name[@revision]`. A plain
`owner/name` that is not a folder is looked up in the local Hugging Face cache only (what `localai pull`
filled), so a mistyped folder never leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localai import hub
from localai.errors import ConversionError

HUB_PREFIX = "hf:"  # a source that may be downloaded


@dataclass(frozen=True)
class Source:
    """A checkpoint folder on disk and where it came from."""

    path: Path
    display_name: str
    provenance: dict[str, Any]


def resolve_source(src: str) -> Source:
    """A local checkpoint folder; `hf:owner/name[@revision]`, downloaded if need be; or `owner/name` from the
    local Hugging Face cache."""
    if src.startswith(HUB_PREFIX):
        return _from_hub(hub.pull(src.removeprefix(HUB_PREFIX)))
    path = Path(src).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConversionError(f"{src} is not a folder (expected a Hugging Face checkpoint folder)")
        return Source(path.resolve(), path.resolve().name, {"kind": "local", "path": str(path.resolve())})
    if not hub.is_repo_id(src):
        raise ConversionError(f"no checkpoint folder {src}")
    try:
        return _from_hub(hub.pull(src, offline=True))
    except hub.NotCachedError:
        raise ConversionError(f"no checkpoint folder {src}, and no Hugging Face repo {src} in the local cache; "
                              f"to download it: localai convert {HUB_PREFIX}{src} (or localai pull {src})") from None


def _from_hub(snapshot: hub.Snapshot) -> Source:
    return Source(snapshot.path, snapshot.repo_id.split("/")[-1],
                  {"kind": "huggingface", "repo_id": snapshot.repo_id, "revision": snapshot.revision})
