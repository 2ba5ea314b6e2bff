"""A package as one file: `localai export` writes a tar archive, `localai import` checks it and installs it.

The archive holds one folder, named after the package, with `manifest.json` and the artifacts the
manifest lists, nothing else. It is not compressed: weights do not compress, and a plain tar can be
streamed and checked without unpacking first.

Importing trusts nothing in the archive. Before anything is written: only an uncompressed tar; every
member a plain file or folder inside that one folder (no absolute paths, "..", links, devices, FIFOs or
sparse files, no name twice, at most MAX_MEMBERS); exactly the manifest and the artifacts it lists, each of the size
it gives. Then those members alone are extracted, through tarfile's `data` filter as well, into a
staging folder in the store, every file is hashed against the manifest, every GGUF is checked for values
llama.cpp aborts on (localai/gguf_check.py), and only then is the package renamed into place. Anything
wrong refuses the whole archive and installs nothing.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from localai import integrity, store
from localai.errors import PackageError
from localai.files import replaced_atomically
from localai.gguf_check import check_gguf
from localai.jsonfile import parse_json_object
from localai.package import MANIFEST_NAME, Manifest, Package, check_name, staged_directory, write_manifest

MAX_MANIFEST_BYTES = 16 * 2**20
MAX_MEMBERS = 10_000  # a package has a handful of files; an archive of thousands is an attack or a mistake


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
    with replaced_atomically(output) as temp, tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(package.root / MANIFEST_NAME, f"{top}/{MANIFEST_NAME}", recursive=False, filter=_plain)
        for artifact in package.manifest.artifacts:
            tar.add(package.path_of(artifact), f"{top}/{artifact.path}", recursive=False, filter=_plain)
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
        with tarfile.open(archive, "r:") as tar:  # uncompressed only: nothing expands beyond the file's size
            members = _members(tar, archive)
            top = _top_folder(members, archive)
            manifest = _read_manifest(tar, members, top, archive)
            files = _expected_files(members, top, manifest, archive)
            target_name = check_name(name or manifest.name)
            target = store.package_path(target_name)
            with staged_directory(target, replace=replace, lock=store.lock_for(target)) as staging:
                # only the checked members, with the top folder stripped, through the data filter as well
                tar.extractall(staging, members=[m.replace(name=relative) for relative, m in files.items()],
                               filter="data")
                bad = [c for c in integrity.check(Package(staging, manifest)) if not c.ok]
                if bad:
                    details = "; ".join(f"{c.path}: {c.status}" for c in bad[:3])
                    raise PackageError(f"{archive.name} does not match its manifest ({details}); nothing installed")
                for artifact in manifest.artifacts:  # values llama.cpp would abort on: refused once, here
                    if artifact.format == "gguf":
                        check_gguf(staging / artifact.path)
                if target_name != manifest.name:
                    manifest.name = target_name
                    write_manifest(staging, manifest)
    except (tarfile.TarError, EOFError) as exc:
        raise PackageError(f"{archive.name} is not a readable uncompressed package archive: {exc}") from exc
    except OSError as exc:
        raise PackageError(f"cannot import {archive.name}: {exc.strerror or exc}") from exc
    return Package(target, manifest)


def _members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Every member, after refusing paths outside the archive's folder, links, special files and repeats."""
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    for member in tar:  # reads the index as it goes: a truncated archive fails here
        if len(members) >= MAX_MEMBERS:
            raise PackageError(f"{archive.name} holds more than {MAX_MEMBERS} entries; refusing it")
        name = member.name
        parts = PurePosixPath(name).parts
        if (not parts or PurePosixPath(name).is_absolute() or ".." in parts or "." in parts or "\\" in name
                or name.startswith("/")):
            raise PackageError(f"{archive.name} holds a path outside its folder ({name!r}); refusing it")
        if not (member.isfile() or member.isdir()):
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise PackageError(f"{archive.name} holds a {kind} ({name!r}); refusing it")
        if member.issparse():  # its holes would expand to the size it claims, far beyond the archive's
            raise PackageError(f"{archive.name} holds a sparse file ({name!r}); refusing it")
        normal = "/".join(parts)
        if normal in seen:
            raise PackageError(f"{archive.name} holds {normal!r} twice; refusing it")
        seen.add(normal)
        members.append(member)
    if not members:
        raise PackageError(f"{archive.name} is empty")
    return members


def _top_folder(members: list[tarfile.TarInfo], archive: Path) -> str:
    tops = {PurePosixPath(m.name).parts[0] for m in members}
    if len(tops) != 1:
        raise PackageError(f"{archive.name} must hold one package folder, not {len(tops)} top-level entries")
    return tops.pop()


def _read_manifest(tar: tarfile.TarFile, members: list[tarfile.TarInfo], top: str, archive: Path) -> Manifest:
    member = next((m for m in members if PurePosixPath(m.name).parts == (top, MANIFEST_NAME)), None)
    if member is None or not member.isfile():
        raise PackageError(f"{archive.name} has no {top}/{MANIFEST_NAME}")
    if member.size > MAX_MANIFEST_BYTES:
        raise PackageError(f"{archive.name}: its manifest is implausibly large ({member.size} bytes)")
    stream = tar.extractfile(member)
    assert stream is not None  # a regular file, checked above
    return Manifest.from_dict(parse_json_object(stream.read(), f"{archive.name}: its manifest", PackageError))


def _expected_files(members: list[tarfile.TarInfo], top: str, manifest: Manifest,
                    archive: Path) -> dict[str, tarfile.TarInfo]:
    """The members to extract (relative path -> member): the manifest and exactly the artifacts it lists, of
    the sizes it gives. Anything else (an extra file, a folder that holds no artifact) refuses the archive
    before one byte is written."""
    sizes = {a.path: a.bytes for a in manifest.artifacts}  # plain relative paths (Manifest.from_dict)
    folders = {str(parent) for p in sizes for parent in PurePosixPath(p).parents if str(parent) != "."}
    files: dict[str, tarfile.TarInfo] = {}
    for member in members:
        relative = "/".join(PurePosixPath(member.name).parts[1:])
        if member.isdir():
            if relative and relative not in folders:
                raise PackageError(f"{archive.name} holds a folder the manifest does not list ({relative!r})")
            continue
        if relative == MANIFEST_NAME:
            files[relative] = member
        elif relative not in sizes:
            raise PackageError(f"{archive.name} holds {relative!r}, which its manifest does not list; nothing "
                               "installed")
        elif member.size != sizes[relative]:
            raise PackageError(f"{archive.name}: {relative} has {member.size} bytes, the manifest says "
                               f"{sizes[relative]}; nothing installed")
        else:
            files[relative] = member
    missing = sorted(set(sizes) - set(files))
    if missing:
        raise PackageError(f"{archive.name} lacks {', '.join(missing)}; nothing installed")
    return files
