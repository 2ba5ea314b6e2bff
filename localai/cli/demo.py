"""`localai demo`: the whole path on an embedded default model.

Until the trained demo model ships, the default is a small random-weight Nemotron-H (Mamba2 +
attention + MLP layers) built offline: it is converted to a q4_k_m GGUF package once (cached in the
store) and asked one question. Its weights are random, so its answer is noise; that is said plainly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from localai.chat import Final

DEMO_PACKAGE = "demo-random-nemotron-h-q4_k_m"
DEFAULT_PROMPT = "What is 12 + 30? /think"


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", parents=parents, help="convert the embedded demo model and run one turn",
                       description="Build, convert and run the embedded demo model (random weights for now).")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"the question to ask (default: {DEFAULT_PROMPT!r})")
    p.add_argument("--max-tokens", type=int, default=48, help="most tokens to generate (default 48)")
    p.add_argument("--reasoning-budget", type=int, default=24, help="most reasoning tokens (default 24)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    return p


def run(args: argparse.Namespace) -> int:
    import localai
    from converters import convert
    from localai import store
    from localai.cli.run import Printer
    from localai.demo_model import write_random_nemotron_h

    if not (store.models_dir() / DEMO_PACKAGE).is_dir():
        print("building the demo checkpoint (random weights) and converting it to GGUF q4_k_m ...", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="localai-demo-") as tmp:
            convert(str(write_random_nemotron_h(Path(tmp) / "random-nemotron-h")), quant="q4_k_m",
                    name=DEMO_PACKAGE)
    model = localai.load(DEMO_PACKAGE)
    try:
        manifest = model.manifest
        print(f"model: {manifest.name} ({manifest.architecture}, {manifest.artifacts[0].quant}, "
              f"{model.backend.name}) in {store.models_dir()}")
        print("note: this demo model has random weights, so its answer is noise; a trained demo model will "
              "replace it.")
        print(f"user: {args.prompt}")
        print("assistant: ", end="", flush=True)
        printer = Printer()
        for event in model.chat([{"role": "user", "content": args.prompt}], max_tokens=args.max_tokens,
                                reasoning_budget=args.reasoning_budget, seed=args.seed):
            printer(event)
            if isinstance(event, Final):
                usage, timings = event.usage, event.timings
                print(f"[{usage.prompt_tokens} prompt tokens; {usage.reasoning_tokens} reasoning + "
                      f"{usage.completion_tokens - usage.reasoning_tokens} answer tokens at "
                      f"{timings.decode_tokens_per_s or 0:.0f} tok/s; finish: {event.finish_reason}]")
    finally:
        model.close()
    return 0
