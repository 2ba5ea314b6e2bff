"""The local model store: packages under `$LOCALAI_HOME/models/<name>`.

A name is registered exactly when its folder exists with a manifest: packages are renamed into place
whole (see `localai.package.staged_directory`) and out of it whole (`remove`), so there is no separate
index to get out of sync. Those renames happen under one file lock (`models/.lock`), so that concurrent
commands (a conversion and an `rm`, two imports of one name) never interleave their checks and renames.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from localai.errors import PackageError
from localai.package import MANIFEST_NAME, NAME_RE, STAGING_MARK, Package, check_name

LOCK_TIMEOUT_S = 60.0  # the lock is only held for renames; waiting this long means something is stuck

def home() -> Path:
    """The store root: `$LOCALAI_HOME`, else the platform's user data folder."""
    env = os.environ.get("LOCALAI_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("localai", appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def default_name(source_name: str, quant: str) -> str:
    """A package name derived from the checkpoint's folder or repo name and the quantization."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", source_name.lower()).strip("-._") or "model"
    return check_name(f"{stem[:100]}-{quant.lower()}")


def package_path(name: str) -> Path:
    return models_dir() / check_name(name)


def packages() -> list[Package]:
    """The readable packages in the store, by name (staging folders and broken entries are skipped)."""
    root = models_dir()
    found = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name.startswith(".") or not entry.is_dir() or not NAME_RE.fullmatch(entry.name):
            continue  # staging folders, stray files, and folders no command could name
        try:
            found.append(Package.open(entry))
        except PackageError:
            continue
    return found


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the store's lock (shared by every localai process on this machine)."""
    from filelock import FileLock, Timeout

    root = models_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(root / ".lock", timeout=LOCK_TIMEOUT_S)
        lock.acquire()
    except Timeout:
        raise PackageError(f"the store {root} stayed locked by another localai process for "
                           f"{LOCK_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise PackageError(f"cannot lock the store {root}: {exc.strerror or exc}") from exc
    try:
        yield
    finally:
        lock.release()


def lock_for(target: Path) -> contextlib.AbstractContextManager[None] | None:
    """The store's lock when `target` is a package folder in the store, else None."""
    return locked() if target.absolute().parent.resolve() == models_dir().resolve() else None


def open_package(name: str) -> Package:
    """The package called `name` in the store."""
    path = package_path(name)
    if not (path / MANIFEST_NAME).is_file():
        raise PackageError(f"no package named {name!r} in {models_dir()} (see `localai ls`)")
    return Package.open(path)


def remove(name: str) -> Path:
    """Delete the package `name`: it leaves the store at once (one rename), then its files are deleted."""
    path = package_path(name)
    with locked():
        if not (path / MANIFEST_NAME).is_file():
            raise PackageError(f"no package named {name!r} in {models_dir()} (see `localai ls`)")
        # a staging-style name: if this process dies mid-delete, the next store write sweeps it away
        doomed = path.parent / f".{name}{STAGING_MARK}{os.getpid()}-rm-{secrets.token_hex(4)}"
        os.rename(path, doomed)
    if doomed.is_symlink():  # a package linked into the store: remove the link, never what it points to
        doomed.unlink()
    else:
        shutil.rmtree(doomed, ignore_errors=True)
    return path
