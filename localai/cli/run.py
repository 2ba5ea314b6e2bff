"""`localai run MODEL --prompt TEXT`: one turn, streamed (reasoning on stderr, answer on stdout)."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import Any

from localai import structured
from localai.backends.base import DEVICES
from localai.errors import LocalAIError
from localai.events import ContentDelta, Final, Notice, ReasoningDelta, ToolCall
from localai.jsonfile import read_bounded, read_json
from localai.options import DEFAULT_MAX_TOKENS, DEFAULT_SAMPLING, given

THREADS_HELP = "CPU threads, fixed (default: every physical core, fewer while other processes keep cores busy)"


def budget(value: str) -> int | None:
    """--reasoning-budget: a token count, or "unlimited"."""
    if value.lower() in ("unlimited", "none", "inf"):
        return None
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be >= 0 or 'unlimited'")
    return number


def text(value: str) -> str:
    """A text argument: bytes that are not UTF-8 reach Python as lone surrogates, which no tokenizer takes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("not valid UTF-8 text") from None
    return value


def add_generation_arguments(p: argparse.ArgumentParser) -> None:
    """Model loading, thinking and sampling options shared by `run` and `chat`."""
    think = p.add_mutually_exclusive_group()
    think.add_argument("--think", dest="think", action="store_const", const=True, help="ask the model to reason first")
    think.add_argument("--no-think", dest="think", action="store_const", const=False, help="no reasoning")
    p.add_argument("--reasoning-budget", type=budget, metavar="N",
                   help="most reasoning tokens (0 = no reasoning; default unlimited)")
    p.add_argument("--reasoning-grace", type=int, metavar="N",
                   help="after the budget, tokens allowed to finish the line (default max(8, N/10); 0 = cut hard)")
    p.add_argument("--max-tokens", type=int,
                   help=f"most tokens, reasoning included (default: the model's, else {DEFAULT_MAX_TOKENS})")
    p.add_argument("--temperature", type=float,
                   help=f"0 = greedy (default: the model's, else {DEFAULT_SAMPLING['temperature']})")
    p.add_argument("--top-p", type=float, help=f"nucleus mass (default: the model's, else {DEFAULT_SAMPLING['top_p']})")
    p.add_argument("--top-k", type=int, help="keep the k most likely tokens (default: off)")
    p.add_argument("--min-p", type=float, help="drop tokens below this fraction of the top probability")
    p.add_argument("--repeat-penalty", type=float, dest="repetition_penalty", help="repetition penalty (1 = off)")
    p.add_argument("--seed", type=int, help="sampling seed (default: random)")
    p.add_argument("--stop", action="append", type=text, help="stop string (repeatable)")
    p.add_argument("--ctx", type=int, help="context size in tokens (default: min(4096, the model's))")
    p.add_argument("--on-overflow", dest="context_policy", choices=("drop_oldest", "error"),
                   help="when the conversation outgrows the context: drop the oldest turns (default) or stop")
    answer = p.add_mutually_exclusive_group()
    answer.add_argument("--json-schema", type=Path, metavar="FILE",
                        help="the answer is JSON valid against this JSON schema (after any thought)")
    answer.add_argument("--json-object", action="store_true", help="the answer is one JSON object")
    answer.add_argument("--regex", type=text, metavar="PATTERN", help="the answer matches this regular expression")
    answer.add_argument("--grammar", type=Path, metavar="FILE",
                        help="the answer follows this grammar: Lark (llguidance's dialect), or GBNF if FILE ends in "
                             ".gbnf")
    p.add_argument("--tools", type=Path, metavar="FILE",
                   help="tools the model may call: a JSON list of OpenAI function tools (docs/tools.md)")
    p.add_argument("--tool-choice", metavar="CHOICE",
                   help="auto (default), none, required, or a tool's name (a call to it is forced)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where an ONNX model runs (auto: CUDA if onnxruntime has it, else CPU; tensorrt: onnxruntime's "
                        "TensorRT for RTX plugin or TensorRT provider); TensorRT engines run on the GPU")


def generation_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives, by `ChatOptions.changed` name: an option left out is not there
    (argparse's None), so the model's defaults stand. --reasoning-budget unlimited is the default anyway."""
    return given(think=args.think, reasoning_budget=args.reasoning_budget, reasoning_grace=args.reasoning_grace,
                 max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                 min_p=args.min_p, repetition_penalty=args.repetition_penalty, seed=args.seed, stop=args.stop,
                 context_policy=args.context_policy, constraint=constraint(args),
                 tools=read_json(args.tools, "the tools file", max_bytes=MAX_FILE_BYTES) if args.tools else None,
                 tool_choice=args.tool_choice)


MAX_FILE_BYTES = 1 << 20  # a schema, grammar or tool list given on the command line


def constraint(args: argparse.Namespace) -> structured.Constraint | None:
    """The answer's constraint from --json-schema, --json-object, --regex or --grammar, if any."""
    if args.json_schema:
        return structured.json_schema(read_json(args.json_schema, "the JSON schema file", max_bytes=MAX_FILE_BYTES))
    if args.json_object:
        return structured.json_object()
    if args.regex is not None:
        return structured.regex(args.regex)
    if args.grammar:
        raw = read_bounded(args.grammar, "the grammar file", max_bytes=MAX_FILE_BYTES)
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LocalAIError(f"the grammar file is not UTF-8 text: {args.grammar}") from None
        return structured.grammar(source, "gbnf" if args.grammar.suffix == ".gbnf" else "lark")
    return None



def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("run", parents=parents, help="run one prompt through a model",
                       description="Run one prompt: the chat template is applied unless --raw.")
    p.add_argument("model", metavar="MODEL", help="package folder, manifest.json, store name or .gguf file")
    p.add_argument("--prompt", required=True, type=text, help="the user message (or raw text with --raw)")
    p.add_argument("--system", type=text, help="system prompt")
    p.add_argument("--raw", action="store_true", help="plain completion of PROMPT: no template, no reasoning")
    p.add_argument("--json", action="store_true", help="print one JSON object with the texts, usage and timings")
    add_generation_arguments(p)
    return p


class Printer:
    """Streams events: reasoning dimmed on stderr, the answer on stdout, notices on stderr."""

    def __init__(self) -> None:
        self._dim = sys.stderr.isatty()
        self._reasoning_open = False

    def __call__(self, event: object) -> None:
        if isinstance(event, ReasoningDelta):
            sys.stderr.write(("\x1b[2m" if self._dim else "") + event.text + ("\x1b[0m" if self._dim else ""))
            sys.stderr.flush()
            self._reasoning_open = True
        elif isinstance(event, ContentDelta):
            self._close_reasoning()
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, ToolCall):
            self._close_reasoning()
            if event.valid:
                print(f"\ntool call: {event.name} {event.arguments}")
            else:
                print(f"note: invalid tool call ({event.error}): {event.text}", file=sys.stderr)
        elif isinstance(event, Notice):
            self._close_reasoning()
            print(f"note: {event.text}", file=sys.stderr)
        elif isinstance(event, Final):
            self._close_reasoning()
            print()

    def _close_reasoning(self) -> None:
        if self._reasoning_open:
            sys.stderr.write("\n")
            self._reasoning_open = False


def run(args: argparse.Namespace) -> int:
    import localai

    settings = {"seed": secrets.randbits(31), **generation_settings(args)}
    model = localai.load(args.model, n_ctx=args.ctx, n_threads=args.threads, device=args.device)
    try:
        options = model.defaults.changed(**settings)
        if args.raw:
            events = model.stream_complete(args.prompt, options)
        else:
            messages = [{"role": "system", "content": args.system}] if args.system else []
            events = model.stream_chat([*messages, {"role": "user", "content": args.prompt}], options)
        printer = None if args.json else Printer()
        final: Final | None = None
        for event in events:
            if printer:
                printer(event)
            elif isinstance(event, Notice):
                print(f"note: {event.text}", file=sys.stderr)
            if isinstance(event, Final):
                final = event
    finally:
        model.close()
    if args.json and final is not None:
        print(json.dumps({"model": model.manifest.name, **final.to_dict(), "seed": options.sampling.seed,
                          "tokens": final.tokens}))
    return 0
