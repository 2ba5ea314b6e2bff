"""`localai rm NAME [NAME ...]`: delete packages from the store."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("rm", parents=parents, help="delete packages from the store",
                       description="Delete packages from the local store. Each disappears at once (one rename "
                                   "under the store's lock); its files are deleted after.")
    p.add_argument("names", metavar="NAME", nargs="+", help="package names (see `localai ls`)")
    return p


def run(args: argparse.Namespace) -> int:
    from localai import store

    for name in args.names:  # check every name first: a typo in the last should not half-run the command
        store.open_package(name)
    for name in args.names:
        store.remove(name)
        print(f"removed {name}")
    return 0
