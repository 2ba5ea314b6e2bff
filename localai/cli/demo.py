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

DEMO_PACKAGE = "demo-random-nemotron-h-q4_k_m"
DEFAULT_PROMPT = "What is 12 + 30? /think"


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", parents=parents, help="convert the embedded demo model and run one turn",
                       description="Build, convert and run the embedded demo model (random weights for now).")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"the question to ask (default: {DEFAULT_PROMPT!r})")
    p.add_argument("--max-tokens", type=int, default=48, help="most tokens to generate (default 48)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    return p


def run(args: argparse.Namespace) -> int:
    import localai
    from converters import convert
    from localai import store
    from localai.demo_model import write_random_nemotron_h
    from localai.generate import GenerationStats
    from localai.sampling import SamplingParams

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
        stats = GenerationStats()
        params = SamplingParams(temperature=0.6, top_p=0.95, seed=args.seed)
        for token in model.generate(model.prompt_tokens(args.prompt), params, max_tokens=args.max_tokens,
                                    stats=stats):
            print(token.text, end="", flush=True)
        rate = stats.completion_tokens / stats.decode_seconds if stats.decode_seconds else 0.0
        print(f"\n[{stats.prompt_tokens} prompt tokens, {stats.completion_tokens} generated at {rate:.0f} tok/s, "
              f"finish: {stats.finish_reason}]")
    finally:
        model.close()
    return 0
