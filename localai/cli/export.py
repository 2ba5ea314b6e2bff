"""`localai export NAME -o FILE.tar`: a package as one verifiable file, to carry to another machine."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("export", parents=parents, help="write a package to one .tar file",
                       description="Write a package (manifest and artifacts, checked against the manifest first) "
                                   "to one uncompressed tar file; `localai import` installs it elsewhere.")
    p.add_argument("model", metavar="NAME", help="store name or package folder")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="the .tar to write (default: NAME.tar here; "
                                                                     "a folder: NAME.tar in it)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    return p


def run(args: argparse.Namespace) -> int:
    from localai import archive, integrity
    from localai.cli.progress import progress_bar
    from localai.errors import PackageError
    from localai.model import resolve
    from localai.units import human_bytes

    package = resolve(args.model)
    if package.manifest.source.get("kind") == "gguf":
        raise PackageError(f"{args.model} is a bare GGUF file, not a package: copy the file itself")
    output = args.output if args.output is not None else Path(f"{package.manifest.name}.tar")
    final = output / f"{package.manifest.name}.tar" if output.is_dir() else output
    if final.exists() and not args.force:
        raise PackageError(f"{final} already exists (pass --force to replace it)")
    if not final.parent.is_dir():
        raise PackageError(f"no folder {final.parent} to write {final.name} into")
    with progress_bar("checking", integrity.total_bytes(package), bytes_=True) as on_read:
        written = archive.export(package, final, on_read)
    print(f"{package.manifest.name} -> {written} ({human_bytes(written.stat().st_size)})")
    return 0
