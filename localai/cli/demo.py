"""`localai demo`: the embedded demo model, end to end.

The package ships a small trained Nemotron-H (Mamba2 + attention + MLP layers) that adds multi-digit
numbers, thinking column by column first (docs/demo.md). The first run converts it to a GGUF package in
the store; later runs reuse that package as long as it was made from the same checkpoint. Then it opens
the chat app, or a line-mode chat with --plain, or answers one --prompt and exits. Without a terminal it
answers one example question and says, in one line on stderr, how to get the chat.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from localai.cli.run import THREADS_HELP
from localai.errors import LocalAIError
from localai.options import given
from localai.package import file_sha256
from localai.tasks.arithmetic import MAX_DIGITS, MIN_DIGITS

DEFAULT_QUANT = "q8_0"
EXAMPLE = "What is 48213 + 9876?"
SCOPE = f"adds two whole numbers of {MIN_DIGITS} to {MAX_DIGITS} digits"  # what it learned


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", parents=parents, help="chat with the embedded demo model",
                       description="Convert the embedded demo model once, then chat with it.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--plain", action="store_true", help="line-mode chat instead of the full-screen app")
    mode.add_argument("--prompt", help="answer one question and exit (e.g. 'What is 123 + 4567?')")
    p.add_argument("--quant", default=DEFAULT_QUANT, help=f"GGUF type of the demo package (default {DEFAULT_QUANT})")
    p.add_argument("--no-think", dest="think", action="store_false", default=True,
                   help="answer without thinking first")
    p.add_argument("--reasoning-budget", type=int, help="most reasoning tokens (default unlimited)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    return p


def checkpoint() -> Path:
    """The bundled Hugging Face checkpoint of the demo model."""
    return Path(str(resources.files("localai") / "data" / "demo-model"))


def ensure_package(quant: str, to: str = "gguf") -> Path:
    """The demo package in the store (`to`: gguf or onnx), converted now if missing or made from another
    checkpoint."""
    from converters import convert
    from localai import store
    from localai.errors import PackageError
    from localai.package import Package

    name = f"demo-nemotron-h-{quant.lower()}" if to == "gguf" else f"demo-nemotron-h-{to}-{quant.lower()}"
    weights = checkpoint() / "model.safetensors"
    try:
        package = Package.open(store.package_path(name))
        made_from = {f["path"]: f["sha256"] for f in package.manifest.source.get("files", [])}
        if made_from.get("model.safetensors") == file_sha256(weights):
            return package.root
    except PackageError:
        pass
    print(f"converting the demo model to {to.upper()} {quant} (once) ...", file=sys.stderr)
    return convert(str(checkpoint()), to=to, quant=quant, name=name, force=True).root


def run(args: argparse.Namespace) -> int:
    from localai import store

    if args.threads is not None and args.threads < 1:
        raise LocalAIError(f"--threads must be at least 1, got {args.threads}")
    package = ensure_package(args.quant)
    settings = given(think=args.think, reasoning_budget=args.reasoning_budget)
    if args.prompt is None and not args.plain:
        if sys.stdin.isatty() and sys.stdout.isatty():
            from tui.app import ChatApp

            ChatApp(str(package), load_options={"n_threads": args.threads}, settings=settings,
                    save_dir=store.home() / "chats", placeholder=f"e.g. What is 123 + 4567? (this model {SCOPE}) "
                                                                 "· F1: keys").run()
            return 0
        print("note: the chat app needs a terminal, so here is one example answer; run `localai demo` in a "
              "terminal, or `localai demo --plain` for a line-mode chat", file=sys.stderr)
    if args.plain:
        from localai.cli.chat import plain_chat

        print(f"The demo model {SCOPE}: ask e.g. What is 123 + 4567?")
        return plain_chat(str(package), settings, n_threads=args.threads)
    return _one_turn(package, args.prompt or EXAMPLE, settings, args.threads)


def _one_turn(package: Path, question: str, settings: dict[str, Any], threads: int | None) -> int:
    import localai
    from localai.cli.run import Printer
    from localai.events import Final

    model = localai.load(package, n_threads=threads)
    try:
        print(f"model: {model.manifest.name} ({model.manifest.architecture}, {model.manifest.artifacts[0].quant}, "
              f"{model.backend.name})")
        print(f"user: {question}")
        printer = Printer()
        for event in model.stream_chat([{"role": "user", "content": question}], **settings):
            printer(event)
            if isinstance(event, Final):
                usage = event.usage
                print(f"[{usage.reasoning_tokens} reasoning + {usage.completion_tokens - usage.reasoning_tokens} "
                      f"answer tokens, {event.timings.decode_tokens_per_s or 0:.0f} tok/s]")
    finally:
        model.close()
    return 0
