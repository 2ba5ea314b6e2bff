"""Find a checkpoint: a local folder, or a Hugging Face repo id fetched with huggingface-hub.

Only configuration, tokenizer and safetensors files are ever fetched: never pickled weights, never
remote code. The network is used only when the user names a repo id that is not a local folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localai.errors import ConversionError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# top-level files only (the hub's patterns match across "/"): no pickles, no duplicate weight sets such
# as Mistral's consolidated.safetensors or an onnx/ subfolder
ALLOW_PATTERNS = [
    "config.json", "generation_config.json", "model.safetensors", "model-*-of-*.safetensors",
    "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "chat_template.jinja",
]


@dataclass(frozen=True)
class Source:
    """A checkpoint folder on disk and where it came from."""

    path: Path
    display_name: str
    provenance: dict[str, Any]


def resolve_source(src: str) -> Source:
    """A local checkpoint folder, or a Hugging Face repo id (`owner/name[@revision]`) downloaded to the cache."""
    path = Path(src).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConversionError(f"{src} is not a folder (expected a Hugging Face checkpoint folder)")
        return Source(path.resolve(), path.resolve().name, {"kind": "local", "path": str(path.resolve())})
    if not _REPO_ID.fullmatch(src):
        raise ConversionError(f"{src} is neither a local folder nor a Hugging Face repo id (owner/name)")
    return _download(src)


def _download(src: str) -> Source:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id, _, revision = src.partition("@")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        folder = Path(snapshot_download(repo_id, revision=revision or None, allow_patterns=ALLOW_PATTERNS,
                                        local_files_only=offline))
    except LocalEntryNotFoundError as exc:
        raise ConversionError(
            f"{repo_id} is not in the local Hugging Face cache and the hub is offline; "
            f"needed files: {', '.join(ALLOW_PATTERNS)}"
        ) from exc
    except Exception as exc:  # the hub client raises many types (HTTP, connection, validation)
        raise ConversionError(f"cannot download {repo_id}: {' '.join(str(exc).split())}") from exc
    return Source(folder, repo_id.split("/")[-1],
                  {"kind": "huggingface", "repo_id": repo_id, "revision": folder.name})
