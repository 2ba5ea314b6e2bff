"""Is a package what its manifest says? Every artifact re-hashed, and nothing there the manifest does not list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localai.errors import PackageError
from localai.package import MANIFEST_NAME, Package, file_sha256


@dataclass(frozen=True)
class FileCheck:
    """One file's verdict: ok, missing, size (wrong size), hash (wrong sha256), unhashed (the manifest
    has no sha256 for it), unlisted (present but not in the manifest) or outside (its path leaves the package)."""

    path: str
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check(package: Package, on_read: Callable[[int], None] | None = None) -> list[FileCheck]:
    """Check every artifact of `package` against the manifest (size, then sha256) and look for unlisted files."""
    checks: list[FileCheck] = []
    listed = {MANIFEST_NAME}
    for artifact in package.manifest.artifacts:
        listed.add(artifact.path)
        try:
            path = package.path_of(artifact)
        except PackageError as exc:
            checks.append(FileCheck(artifact.path, "outside", str(exc)))
            continue
        if not path.is_file():
            checks.append(FileCheck(artifact.path, "missing"))
        elif path.stat().st_size != artifact.bytes:
            checks.append(FileCheck(artifact.path, "size", f"{path.stat().st_size} bytes, expected {artifact.bytes}"))
        elif not artifact.sha256:
            checks.append(FileCheck(artifact.path, "unhashed", "the manifest holds no sha256 for it"))
        else:
            digest = file_sha256(path, on_read=on_read)
            checks.append(FileCheck(artifact.path, "ok") if digest == artifact.sha256 else
                          FileCheck(artifact.path, "hash", f"sha256 {digest}, expected {artifact.sha256}"))
    for path in sorted(_files(package.root)):
        relative = path.relative_to(package.root).as_posix()
        if relative not in listed:
            checks.append(FileCheck(relative, "unlisted", "not in the manifest"))
    return checks


def total_bytes(package: Package) -> int:
    return sum(a.bytes for a in package.manifest.artifacts)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]
