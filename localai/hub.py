"""Hugging Face checkpoints through huggingface-hub: config, tokenizer and safetensors files only.

Never pickled weights (`*.bin`, `*.pt`), never remote code, never sub-folders (duplicate weight sets such
as an onnx/ folder or Mistral's consolidated.safetensors). Downloads go to the Hugging Face cache, resume
where they stopped, and are pinned to the commit they resolved to. Offline (`HF_HUB_OFFLINE=1` or
`offline=True`) only the cache is read, and what it lacks is named file by file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from localai.errors import LocalAIError
from localai.jsonfile import read_json_object
from localai.units import shown

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# top-level files only: the hub's patterns match across "/"
ALLOW_PATTERNS = [
    "config.json", "generation_config.json", "model.safetensors", "model-*-of-*.safetensors",
    "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "chat_template.jinja",
]
REQUIRED = ("config.json", "tokenizer.json")
INDEX_NAME = "model.safetensors.index.json"
SHARD_NAME = re.compile(r"[\w][\w.-]{0,200}\.safetensors")  # a file name: no folder, never "." or ".."


class HubError(LocalAIError):
    """A repo cannot be fetched, or the cache lacks some of its files."""


class NotCachedError(HubError):
    """Offline, and the repo is not in the local Hugging Face cache at all."""


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint in the Hugging Face cache, at one commit."""

    repo_id: str
    revision: str  # the commit hash the request resolved to
    path: Path
    files: list[str]


def is_repo_id(text: str) -> bool:
    return bool(REPO_ID.fullmatch(text))


def offline_by_environment() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def pull(spec: str, *, offline: bool = False) -> Snapshot:
    """Fetch `owner/name[@revision]` into the cache (or, offline, find it there) and check it is complete."""
    if not is_repo_id(spec):
        raise HubError(f"{spec!r} is not a Hugging Face repo id (owner/name or owner/name@revision)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, _, revision = spec.partition("@")
    offline = offline or offline_by_environment()
    try:
        folder = Path(snapshot_download(repo_id, revision=revision or None, allow_patterns=ALLOW_PATTERNS,
                                        local_files_only=offline))
    except LocalEntryNotFoundError:  # offline, or the hub could not be reached
        why = "the hub is offline" if offline else "the Hugging Face hub cannot be reached"
        raise NotCachedError(f"{spec} is not in the local Hugging Face cache and {why}; it needs "
                             f"{', '.join(REQUIRED)} and its *.safetensors weights") from None
    except GatedRepoError:
        raise HubError(f"{repo_id} is gated: accept its terms on huggingface.co and log in "
                       "(`hf auth login`) first") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo_id} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise HubError(f"no repo {repo_id} on the Hugging Face hub (or it is private)") from None
    except Exception as exc:  # the hub client raises many types (HTTP, connection, validation)
        raise HubError(f"cannot download {repo_id}: {' '.join(str(exc).split())}") from exc
    missing = missing_files(folder)
    if missing:
        where = "the local Hugging Face cache" if offline else "the download"
        raise HubError(f"{repo_id}@{folder.name}: {where} lacks {', '.join(missing)}")
    return Snapshot(repo_id, folder.name, folder, sorted(p.name for p in folder.iterdir() if p.is_file()))


def missing_files(folder: Path) -> list[str]:
    """What a checkpoint folder lacks to be converted: config, tokenizer, every safetensors shard."""
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            shards = index_shards(index)
        except HubError:
            return [*missing, f"a readable {INDEX_NAME}"]
        missing += [shard for shard in shards if not (folder / shard).is_file()]
    elif not (folder / "model.safetensors").is_file():
        missing.append("model.safetensors (safetensors weights only: pickled .bin/.pt files are never fetched)")
    return missing


def index_shards(index: Path, error: type[LocalAIError] = HubError) -> list[str]:
    """The shard files a `model.safetensors.index.json` names, each checked to be a plain `*.safetensors`
    file name: an index comes from strangers, and a path in it would have localai open any file."""
    weight_map = read_json_object(index, INDEX_NAME, error).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise error(f"{INDEX_NAME} has no weight_map")
    shards = sorted({str(name) for name in weight_map.values()})
    for name in shards:
        if not SHARD_NAME.fullmatch(name):
            raise error(f"{INDEX_NAME} lists {shown(name)} as a shard: shards are *.safetensors files in the "
                        "checkpoint's folder")
    return shards
