"""The local model store: packages under `$LOCALAI_HOME/models/<name>`.

A name is registered exactly when its folder exists with a manifest: packages are renamed into place
whole (see `localai.package.staged_directory`), so there is no separate index to get out of sync.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

from localai.errors import PackageError
from localai.package import Package

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def home() -> Path:
    """The store root: `$LOCALAI_HOME`, else the platform's user data folder."""
    env = os.environ.get("LOCALAI_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("localai", appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def validate_name(name: str) -> str:
    """Return `name` if it is a valid package name, else raise `PackageError`."""
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise PackageError(
            f"invalid package name {name!r}: use 1-128 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def default_name(source_name: str, quant: str) -> str:
    """A package name derived from the checkpoint's folder or repo name and the quantization."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", source_name.lower()).strip("-._") or "model"
    return validate_name(f"{stem[:100]}-{quant.lower()}")


def package_path(name: str) -> Path:
    return models_dir() / validate_name(name)


def packages() -> list[Package]:
    """The readable packages in the store, by name (staging folders and broken entries are skipped)."""
    root = models_dir()
    found = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            found.append(Package.open(entry))
        except PackageError:
            continue
    return found
