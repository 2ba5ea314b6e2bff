"""`localai bench MODEL [MODEL ...]`: llama-bench's pp/tg tests (and a multi-turn chat) on any package."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localai.backends.base import DEVICES
from localai.bench import BenchRow, BenchSettings, measure_isolated
from localai.cli.run import THREADS_HELP
from localai.errors import LocalAIError
from localai.files import append_lines, check_writable

FORMATS = ("table", "json", "csv", "md")


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", parents=parents, help="measure speed and memory of one or more models",
                       description="Measure prompt processing (pp) and generation (tg) speed as llama-bench "
                                   "does, plus TTFT, inter-token latency, load time and memory. Each model is "
                                   "measured in a fresh process.")
    p.add_argument("models", metavar="MODEL", nargs="*", help="package folder, manifest.json, store name or .gguf file")
    p.add_argument("--endpoint", metavar="URL",
                   help="also measure model --model of this OpenAI-compatible server (e.g. http://127.0.0.1:11435/v1)")
    p.add_argument("--model", dest="endpoint_model", metavar="NAME", help="the model to ask the --endpoint for")
    p.add_argument("--api-key", help="the --endpoint's API key (default: $LOCALAI_API_KEY)")
    p.add_argument("-p", "--n-prompt", type=int, default=512, metavar="P",
                   help="tokens of the pp test (default 512; 0 = skip)")
    p.add_argument("-n", "--n-gen", type=int, default=128, metavar="N",
                   help="tokens of the tg test (default 128; 0 = skip)")
    p.add_argument("-r", "--repetitions", type=int, default=3, metavar="R",
                   help="measured runs of each test (default 3)")
    p.add_argument("--turns", type=int, default=0, metavar="T",
                   help="also run a T-turn chat (turn-state reuse on) and report TTFT per turn (default: off)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument("--device", choices=DEVICES, default="auto", help="where ONNX models run")
    p.add_argument("--ctx", type=int, help="context size (default: what the tests need)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--history", type=Path, metavar="FILE",
                   help="append the results to FILE as JSON lines, with the machine's description")
    return p


def run(args: argparse.Namespace) -> int:
    from localai.machine import machine_description
    from localai.model import resolve

    settings = BenchSettings(n_prompt=args.n_prompt, n_gen=args.n_gen, repetitions=args.repetitions,
                             turns=args.turns, threads=args.threads, device=args.device, n_ctx=args.ctx)
    if not args.models and not args.endpoint:
        raise LocalAIError("nothing to measure: name a MODEL or an --endpoint")
    if bool(args.endpoint) != bool(args.endpoint_model):
        raise LocalAIError("--endpoint and --model go together: the server's URL and the model to ask it for")
    for model in args.models:  # a typo in the last name should not cost the minutes spent on the first
        resolve(model)
    if args.history is not None:
        check_writable(args.history, "--history")
    rows, failures = _measure_all(args.models, settings, debug=getattr(args, "debug", False))
    if args.endpoint:
        rows += _measure_endpoint(args, settings)
    machine = machine_description(args.threads)
    if rows:
        print(render(rows, args.format, machine, settings), end="")
    if rows and args.history is not None:
        when = datetime.now(UTC).isoformat(timespec="seconds")
        append_lines(args.history, [json.dumps({"time": when, "machine": machine, **row.to_dict()}) for row in rows])
        print(f"appended {len(rows)} result(s) to {args.history}", file=sys.stderr)
    if failures:  # the other models' results are shown and kept above; the failures are one line
        raise LocalAIError("; ".join(f"{model}: {message}" for model, message in failures))
    return 0


def _measure_all(models: list[str], settings: BenchSettings, *, debug: bool) -> tuple[list[BenchRow],
                                                                                      list[tuple[str, str]]]:
    """The rows of every model that could be measured, and (model, error) for the others."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    rows: list[BenchRow] = []
    failures: list[tuple[str, str]] = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=True,
                        disable=not sys.stderr.isatty())
    with progress:
        task = progress.add_task("bench", total=len(models) * settings.steps())
        for model in models:
            def step(what: str, model: str = model) -> None:
                progress.update(task, advance=1, description=f"{model}: {what}")

            progress.update(task, description=f"{model}: loading")
            try:
                rows += measure_isolated(model, settings, step, debug=debug)
            except LocalAIError as exc:
                failures.append((model, str(exc)))
    return rows, failures


def _measure_endpoint(args: argparse.Namespace, settings: BenchSettings) -> list[BenchRow]:
    from localai.bench_endpoint import measure_endpoint

    api_key = args.api_key or os.environ.get("LOCALAI_API_KEY")
    return measure_endpoint(args.endpoint, args.endpoint_model, settings, api_key=api_key)


# --- output ------------------------------------------------------------------------------------------

COLUMNS = [  # (header, field); the table formats show these, csv and json every field
    ("model", "model"), ("quant", "quant"), ("backend", "backend"), ("device", "device"), ("threads", "thread_policy"),
    ("test", "test"), ("t/s", "tokens_per_s"), ("TTFT ms", "ttft_ms"), ("ITL p50 ms", "itl_p50_ms"),
    ("ITL p95 ms", "itl_p95_ms"), ("load s", "load_s"), ("peak RSS MB", "peak_rss_mb"), ("GPU MB", "gpu_mb"),
]
TEXT_COLUMNS = ("model", "quant", "backend", "device", "thread_policy", "test")  # left-aligned in markdown


def render(rows: list[BenchRow], fmt: str, machine: dict[str, Any], settings: BenchSettings) -> str:
    """The results as `fmt` (table, md, csv or json)."""
    if fmt == "json":
        return json.dumps({"machine": machine, "settings": settings.__dict__, "results": [r.to_dict() for r in rows]},
                          indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0].to_dict()), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.to_dict().items()})
        return out.getvalue()
    columns = [c for c in COLUMNS if c[1] != "gpu_mb" or any(r.gpu_mb is not None for r in rows)]
    cells = [[_cell(row, name) for _, name in columns] for row in rows]
    footer = [_machine_line(machine, settings), *_turn_growth(rows)]
    if fmt == "md":
        lines = ["| " + " | ".join(h for h, _ in columns) + " |",
                 "|" + "|".join("---" if name in TEXT_COLUMNS else "---:" for _, name in columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join([*lines, "", *footer]) + "\n"
    from rich.console import Console
    from rich.table import Table

    table = Table(*[h for h, _ in columns], box=None, header_style="bold")
    for row in cells:
        table.add_row(*row)
    console = Console(file=io.StringIO(), width=max(160, Console().width), force_terminal=False)
    console.print(table)
    for line in footer:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _cell(row: BenchRow, name: str) -> str:
    value = getattr(row, name)
    if name == "tokens_per_s":
        return f"{value:.2f} ± {row.tokens_per_s_std:.2f}" if row.tokens_per_s_std is not None else f"{value:.2f}"
    if value is None:
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _machine_line(machine: dict[str, Any], settings: BenchSettings) -> str:
    libraries = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items())
    gpus = f"; GPU {', '.join(machine['gpus'])}" if machine["gpus"] else ""
    return (f"{machine['cpu']} ({machine['cpu_cores']} cores), {machine['threads']} threads{gpus}; "
            f"{settings.repetitions} run{'s' if settings.repetitions > 1 else ''} per test after a warm-up; "
            f"{libraries}")


def _turn_growth(rows: list[BenchRow]) -> list[str]:
    lines = []
    for row in rows:
        turns = row.ttft_per_turn_ms
        if turns and len(turns) >= 2 and turns[1] > 0:
            lines.append(f"{row.model} {row.test}: TTFT turn {len(turns)} / turn 2 = x{turns[-1] / turns[1]:.2f} "
                         f"({turns[1]:.0f} -> {turns[-1]:.0f} ms)")
    return lines
