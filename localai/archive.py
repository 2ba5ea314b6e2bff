"""A package as one file: `localai export` writes a tar archive, `localai import` checks it and installs it.

The archive holds one folder, named after the package, with `manifest.json` and the artifacts the
manifest lists, nothing else. It is not compressed: weights do not compress, and a plain tar can be
streamed and checked without unpacking first.

Importing trusts nothing in the archive: every member must be a plain file or folder inside that one
folder (no absolute paths, no "..", no links, devices or FIFOs), extraction goes through tarfile's `data`
filter as well, and every file is hashed against the manifest before the package is renamed into the
store. Anything wrong refuses the whole archive and installs nothing.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from localai import integrity, store
from localai.errors import PackageError
from localai.package import MANIFEST_NAME, Manifest, Package, staged_directory, write_manifest

MAX_MANIFEST_BYTES = 16 * 2**20


def export(package: Package, output: Path, on_read: Callable[[int], None] | None = None) -> Path:
    """Write `package` to the tar file `output` after checking its files against the manifest; the file
    appears only when complete."""
    problems = [c for c in integrity.check(package, on_read) if not c.ok]
    if problems:
        first = problems[0]
        raise PackageError(f"package {package.manifest.name} does not match its manifest ({first.path}: "
                           f"{first.status}{', ' + first.detail if first.detail else ''}); not exporting it")
    output = output.expanduser()
    if output.is_dir():
        output = output / f"{package.manifest.name}.tar"
    top = package.manifest.name
    fd, temp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(package.root / MANIFEST_NAME, f"{top}/{MANIFEST_NAME}", recursive=False, filter=_plain)
            for artifact in package.manifest.artifacts:
                tar.add(package.path_of(artifact), f"{top}/{artifact.path}", recursive=False, filter=_plain)
        os.replace(temp, output)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return output


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner names, ids or modes from this machine in the archive."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


def import_(archive: Path, *, name: str | None = None, replace: bool = False) -> Package:
    """Install the package in `archive` into the store (as `name` if given); refuse anything suspect."""
    archive = archive.expanduser()
    if not archive.is_file():
        raise PackageError(f"no archive {archive}")
    if not hasattr(tarfile, "data_filter"):  # Python 3.11.4+
        raise PackageError("importing archives safely needs Python 3.11.4 or newer (tarfile's data filter)")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads the whole index: a truncated archive fails here
            top = _check_members(members, archive)
            manifest = _read_manifest(tar, top, archive)
            target_name = store.validate_name(name or manifest.name)
            target = store.package_path(target_name)
            with staged_directory(target, replace=replace, lock=store.lock_for(target)) as staging:
                unpacked = staging / "unpacked"
                tar.extractall(unpacked, filter="data")
                root = unpacked / top
                package = Package(root, manifest)
                bad = [c for c in integrity.check(package) if not c.ok]
                if bad:
                    details = "; ".join(f"{c.path}: {c.status}" for c in bad[:3])
                    raise PackageError(f"{archive.name} does not match its manifest ({details}); nothing installed")
                for entry in root.iterdir():
                    entry.rename(staging / entry.name)
                unpacked.joinpath(top).rmdir()
                unpacked.rmdir()
                if target_name != manifest.name:
                    manifest.name = target_name
                    write_manifest(staging, manifest)
    except (tarfile.TarError, EOFError) as exc:
        raise PackageError(f"{archive.name} is not a readable package archive: {exc}") from exc
    except OSError as exc:
        raise PackageError(f"cannot import {archive.name}: {exc.strerror or exc}") from exc
    return Package(target, manifest)


def _check_members(members: list[tarfile.TarInfo], archive: Path) -> str:
    """The archive's one top folder, after refusing members that are not plain files or folders inside it."""
    if not members:
        raise PackageError(f"{archive.name} is empty")
    tops = set()
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or member.name.startswith(("/", "\\")) or "\\" in member.name:
            raise PackageError(f"{archive.name} holds a path outside its folder ({member.name!r}); refusing it")
        if not (member.isfile() or member.isdir()):
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise PackageError(f"{archive.name} holds a {kind} ({member.name!r}); refusing it")
        tops.add(path.parts[0])
    if len(tops) != 1:
        raise PackageError(f"{archive.name} must hold one package folder, not {len(tops)} top-level entries")
    return tops.pop()


def _read_manifest(tar: tarfile.TarFile, top: str, archive: Path) -> Manifest:
    try:
        member = tar.getmember(f"{top}/{MANIFEST_NAME}")
    except KeyError:
        raise PackageError(f"{archive.name} has no {top}/{MANIFEST_NAME}") from None
    if member.size > MAX_MANIFEST_BYTES:
        raise PackageError(f"{archive.name}: its manifest is implausibly large ({member.size} bytes)")
    stream = tar.extractfile(member)
    assert stream is not None  # a regular file, checked above
    try:
        data = json.loads(stream.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{archive.name}: its manifest is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PackageError(f"{archive.name}: its manifest must hold a JSON object")
    return Manifest.from_dict(data)

