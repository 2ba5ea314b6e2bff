"""`localai serve [MODEL ...]`: an OpenAI- and Ollama-compatible server on this machine (docs/serve.md)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys

from localai.cli.run import THREADS_HELP
from localai.errors import LocalAIError

DEFAULT_PORT = 11435  # next to Ollama's 11434, so both can run
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}


def duration(text: str) -> float:
    """--keep-alive: 300, 30s, 5m, 1h (seconds without a unit); -1 or "forever": never unload."""
    if text in ("-1", "forever"):
        return float("inf")
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError("a duration such as 30s, 5m or 1h (-1: forever)")
    return float(match[1]) * UNITS[match[2]]


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", parents=parents, help="serve models over the OpenAI and Ollama APIs",
                       description="Serve models over HTTP: the OpenAI API under /v1, the Ollama API under /api.")
    p.add_argument("models", metavar="MODEL", nargs="*",
                   help="package folder, manifest.json, store name or .gguf file (default: every package in the store)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    p.add_argument("--api-key", help="require `Authorization: Bearer KEY` (default: $LOCALAI_API_KEY; none)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without an API key")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from ORIGIN (repeatable; default: none)")
    p.add_argument("--ctx", type=positive, help="context size in tokens (default: min(4096, the model's))")
    p.add_argument("--threads", type=positive, help=THREADS_HELP)
    p.add_argument("--device", default="auto", help="where ONNX models run (auto, cpu, cuda, tensorrt)")
    p.add_argument("--keep-alive", type=duration, default=300.0, metavar="DURATION",
                   help="unload a model idle this long (default: 5m; -1: never)")
    p.add_argument("--max-loaded", type=positive, default=1, metavar="N", help="models in memory at once (default: 1)")
    p.add_argument("--parallel", type=positive, default=1, metavar="N",
                   help="requests that generate at once per model, each on its own instance (default: 1)")
    p.add_argument("--turn-snapshots", type=int, default=8, metavar="N",
                   help="conversation states kept per instance for prompt reuse (default: 8; 0: off)")
    return p


def check_host(host: str, api_key: str | None, insecure: bool) -> None:
    """A server others can reach needs a key: refused without one unless --insecure says so."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not api_key and not insecure:
        raise LocalAIError(f"--host {host} lets other machines connect: give --api-key (or --insecure to "
                           "serve without one)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from localai.server.setup import build_app, offered_packages

    api_key = args.api_key or os.environ.get("LOCALAI_API_KEY") or None
    check_host(args.host, api_key, args.insecure)
    packages = offered_packages(args.models)
    app = build_app(packages, api_key=api_key, cors_origins=tuple(args.cors_origin), n_ctx=args.ctx,
                    n_threads=args.threads, device=args.device, keep_alive=args.keep_alive,
                    max_loaded=args.max_loaded, parallel=args.parallel, turn_snapshots=args.turn_snapshots)
    where = f"http://{args.host}:{args.port}"
    print(f"localai serve: {len(packages)} model{'s' * (len(packages) != 1)} ({', '.join(sorted(packages))}) "
          f"on {where} — OpenAI API: {where}/v1, Ollama API: {where}/api", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
