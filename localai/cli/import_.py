"""`localai import FILE.tar [--name NEW]`: install an exported package after checking every file."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("import", parents=parents, help="install a package from a .tar file",
                       description="Install a package written by `localai export`: links, special files and paths "
                                   "outside its folder are refused, every file is hashed against the manifest, "
                                   "and the package appears in the store only when all of it checks out.")
    p.add_argument("archive", metavar="FILE", type=Path, help="the .tar file")
    p.add_argument("--name", help="install under this name (default: the package's own)")
    p.add_argument("--force", action="store_true", help="replace a package of that name")
    return p


def run(args: argparse.Namespace) -> int:
    from localai import archive

    package = archive.import_(args.archive, name=args.name, replace=args.force)
    print(f"imported {package.manifest.name} -> {package.root}")
    return 0
