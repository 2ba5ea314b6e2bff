"""`localai ls`: the packages in the store."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("ls", parents=parents, help="list the packages in the store",
                       description="List the model packages in the local store ($LOCALAI_HOME/models).")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    return p


def run(args: argparse.Namespace) -> int:
    from localai import store
    from localai.backends import BACKENDS
    from localai.units import human_bytes, printable

    rows = []
    for package in store.packages():
        m = package.manifest
        main = next((a for a in m.artifacts if a.format in BACKENDS), m.artifacts[0] if m.artifacts else None)
        rows.append({"name": package.root.name, "architecture": m.architecture, "format": main.format if main else "",
                     "quant": main.quant if main else "", "bytes": sum(a.bytes for a in m.artifacts),
                     "created": m.created})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no packages in {store.models_dir()} (make one with `localai convert`, or `localai import` one)")
        return 0
    header = ("NAME", "ARCHITECTURE", "FORMAT", "QUANT", "SIZE", "CREATED")
    cells = [(r["name"], r["architecture"], r["format"], r["quant"], human_bytes(r["bytes"]),
              r["created"].replace("T", " ").removesuffix("+00:00")) for r in rows]
    table = [header, *[tuple(map(printable, row)) for row in cells]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i != 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                      strict=True)))
              .rstrip())
    return 0
