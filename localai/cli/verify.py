"""`localai verify NAME`: re-hash every artifact of a package against its manifest."""

from __future__ import annotations

import argparse
import sys

from localai.cli.progress import progress_bar
from localai.errors import PackageError


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("verify", parents=parents, help="check a package's files against its manifest",
                       description="Re-hash every artifact of a package (sha256) and compare sizes and hashes with "
                                   "the manifest; report missing, corrupt and unlisted files. Exit status 1 if any.")
    p.add_argument("model", metavar="MODEL", help="store name or package folder")
    return p


def run(args: argparse.Namespace) -> int:
    from localai import integrity
    from localai.model import resolve

    package = resolve(args.model)
    if package.manifest.source.get("kind") == "gguf" and not (package.root / "manifest.json").is_file():
        raise PackageError(f"{args.model} is a bare GGUF file: there is no manifest to verify it against")
    if not package.manifest.artifacts:
        raise PackageError(f"package {package.manifest.name} lists no artifacts: there is nothing to verify")
    with progress_bar("hashing", integrity.total_bytes(package), bytes_=True) as on_read:
        checks = integrity.check(package, on_read)
    for c in checks:
        print(f"{'ok' if c.ok else c.status.upper():<9} {c.path}" + (f"  ({c.detail})" if c.detail else ""))
    bad = [c for c in checks if not c.ok]
    if bad:
        raise PackageError(f"package {package.manifest.name} is damaged: {len(bad)} of {len(checks)} files fail "
                           "(listed above)")
    print(f"package {package.manifest.name}: all {len(checks)} files match the manifest", file=sys.stderr)
    return 0

