"""`localai run MODEL --prompt TEXT`: one turn, streamed to stdout."""

from __future__ import annotations

import argparse
import json
import secrets
import sys

from localai.errors import LocalAIError
from localai.generate import GenerationStats
from localai.sampling import SamplingParams

DEFAULT_TEMPERATURE, DEFAULT_TOP_P = 0.7, 0.95


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("run", parents=parents, help="run one prompt through a model",
                       description="Run one prompt: the chat template is applied unless --raw.")
    p.add_argument("model", metavar="MODEL", help="package folder, manifest.json, store name or .gguf file")
    p.add_argument("--prompt", required=True, help="the user message (or raw text with --raw)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--raw", action="store_true", help="plain completion of PROMPT, no chat template")
    p.add_argument("--max-tokens", type=int, default=256, help="most tokens to generate (default 256)")
    p.add_argument("--temperature", type=float, help="0 = greedy (default: the model's, else 0.7)")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass (default: the model's, else 0.95)")
    p.add_argument("--seed", type=int, help="sampling seed (default: random, printed with --json)")
    p.add_argument("--ctx", type=int, help="context size in tokens (default: min(4096, the model's))")
    p.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object with text, tokens and timings")
    return p


def run(args: argparse.Namespace) -> int:
    import localai

    if args.max_tokens < 1:
        raise LocalAIError("--max-tokens must be at least 1")
    model = localai.load(args.model, n_ctx=args.ctx, n_threads=args.threads)
    try:
        defaults = model.manifest.generation_defaults
        seed = args.seed if args.seed is not None else secrets.randbits(31)
        try:
            params = SamplingParams(
                temperature=_first(args.temperature, defaults.get("temperature"), DEFAULT_TEMPERATURE),
                top_p=_first(args.top_p, defaults.get("top_p"), DEFAULT_TOP_P),
                top_k=int(defaults.get("top_k") or 0),
                seed=seed,
            )
        except ValueError as exc:
            raise LocalAIError(str(exc)) from exc
        prompt = model.prompt_tokens(args.prompt, raw=args.raw, system=args.system)
        stats = GenerationStats()
        pieces: list[str] = []
        for token in model.generate(prompt, params, max_tokens=args.max_tokens, stats=stats):
            pieces.append(token.text)
            if not args.json:
                sys.stdout.write(token.text)
                sys.stdout.flush()
    finally:
        model.close()
    if args.json:
        print(json.dumps({
            "model": model.manifest.name,
            "text": "".join(pieces),
            "tokens": stats.tokens,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "finish_reason": stats.finish_reason,
            "seed": seed,
            "timings": {
                "prefill_seconds": round(stats.prefill_seconds, 4),
                "decode_seconds": round(stats.decode_seconds, 4),
                "prefill_tokens_per_second": _rate(stats.prompt_tokens, stats.prefill_seconds),
                "decode_tokens_per_second": _rate(stats.completion_tokens, stats.decode_seconds),
            },
        }))
    else:
        print()
    return 0


def _first(*values: float | None) -> float:
    return float(next(v for v in values if v is not None))


def _rate(tokens: int, seconds: float) -> float | None:
    return round(tokens / seconds, 2) if seconds > 0 and tokens else None
