"""`localai pull REPO_ID[@REVISION]`: fetch a Hugging Face checkpoint (safetensors only) into the cache."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("pull", parents=parents, help="download a Hugging Face checkpoint (safetensors only)",
                       description="Download config, tokenizer and *.safetensors files of a Hugging Face repo into "
                                   "the Hugging Face cache (never pickled weights or remote code); resumes "
                                   "interrupted downloads; prints the commit it pinned.")
    p.add_argument("repo", metavar="REPO_ID[@REVISION]", help="e.g. nvidia/NVIDIA-Nemotron-Nano-9B-v2")
    p.add_argument("--offline", action="store_true",
                   help="use only the local cache and name what it lacks (also: HF_HUB_OFFLINE=1)")
    p.add_argument("--json", action="store_true", help="print one JSON object (repo, revision, path, files)")
    return p


def run(args: argparse.Namespace) -> int:
    from localai.hub import pull

    snapshot = pull(args.repo, offline=args.offline)
    if args.json:
        print(json.dumps({"repo_id": snapshot.repo_id, "revision": snapshot.revision, "path": str(snapshot.path),
                          "files": snapshot.files}))
    else:
        print(f"{snapshot.repo_id}@{snapshot.revision}: {len(snapshot.files)} files in {snapshot.path}")
        print(f"convert it with: localai convert {snapshot.repo_id}@{snapshot.revision}")
    return 0
