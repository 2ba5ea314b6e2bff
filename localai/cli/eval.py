"""`localai eval`: quality lost by a conversion (perplexity, KL against a reference) or a reasoning-budget sweep.

    localai eval MODEL [--reference REF] [--text FILE] [--ctx N] [--json]
    localai eval MODEL --task TASK [--budgets 0,16,64,256,unlimited] [--n 200] [--csv FILE] [--json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from localai.backends.base import DEVICES
from localai.cli.progress import progress_bar
from localai.cli.run import THREADS_HELP
from localai.errors import LocalAIError
from localai.files import check_writable, write_text_atomic

DEFAULT_BUDGETS = "0,16,64,256,unlimited"
CHART_WIDTH = 40


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", parents=parents, help="measure quality: perplexity and KL, or a reasoning-budget sweep",
                       description="Perplexity of MODEL on a text and its distance from a reference model (KL, "
                                   "top-1 agreement, logit differences), or with --task: accuracy per reasoning "
                                   "budget.")
    p.add_argument("model", metavar="MODEL", help="package folder, manifest.json, store name or .gguf file")
    text = p.add_argument_group("text mode (default)")
    text.add_argument("--reference", metavar="REF",
                      help="model to compare against: a package, store name, .gguf file, or a Hugging Face "
                           "checkpoint folder (run by transformers in float32, when installed)")
    text.add_argument("--text", type=Path, metavar="FILE", help="UTF-8 text to score (default: public-domain "
                                                                "passages shipped with localai)")
    text.add_argument("--ctx", type=int, metavar="N", help="tokens per chunk; the second half of each is scored "
                                                          "(default 512)")
    task = p.add_argument_group("task mode")
    task.add_argument("--task", metavar="TASK", help="run a task's problems per reasoning budget (tasks: arithmetic)")
    task.add_argument("--budgets", metavar="LIST", help=f"reasoning budgets (default {DEFAULT_BUDGETS}; 0 = thinking "
                                                        "off)")
    task.add_argument("--n", type=int, metavar="N", help="problems per budget (default 200)")
    task.add_argument("--csv", type=Path, metavar="FILE",
                      help="also write the sweep's rows to this CSV file (default: none; nothing is written unasked)")
    task.add_argument("--max-tokens", type=int, metavar="N",
                      help="most tokens per answer, reasoning included (default: the model's, else 1024)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument("--device", choices=DEVICES, default="auto", help="where ONNX models run")
    return p


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise LocalAIError(f"--threads must be at least 1, got {args.threads}")
    if args.task is not None:
        mixed = [f"--{name}" for name in ("reference", "text", "ctx") if getattr(args, name) is not None]
        if mixed:
            raise LocalAIError(f"--task runs a budget sweep; {', '.join(mixed)} belong to text mode")
        return _sweep(args)
    lone = [f"--{name.replace('_', '-')}" for name in ("budgets", "n", "csv", "max_tokens")
            if getattr(args, name) is not None]
    if lone:
        raise LocalAIError(f"{', '.join(lone)} need --task")
    return _text(args)


# --- text mode ---------------------------------------------------------------------------------------


def _text(args: argparse.Namespace) -> int:
    import localai
    from localai import quality

    ctx = args.ctx if args.ctx is not None else quality.DEFAULT_CONTEXT
    if ctx < 8:
        raise LocalAIError(f"--ctx must be at least 8, got {ctx}")
    text, text_name = _read_text(args.text)
    model = localai.load(args.model, n_ctx=ctx, n_threads=args.threads, device=args.device)
    reference: Any = None
    try:
        tokens = model.backend.tokenize(text, add_bos=False, special=False)
        scorer_of_reference = None
        if args.reference is not None:
            reference, scorer_of_reference = _reference(args.reference, ctx, args, text, tokens, model.bos_id)
        with progress_bar("chunks", len(quality.chunks(tokens, ctx, model.bos_id))) as advance:
            report = quality.evaluate(model.backend.logits, tokens, ctx=ctx, bos=model.bos_id,
                                      reference=scorer_of_reference, on_chunk=lambda: advance(1))
    finally:
        model.close()
        if hasattr(reference, "close"):
            reference.close()
    report.model, report.text = model.manifest.name, text_name
    report.reference = _name_of(reference, args.reference)
    print(json.dumps(report.to_dict(), indent=2) if args.json else _quality_table(report))
    return 0


def _read_text(path: Path | None) -> tuple[str, str]:
    from localai import quality

    if path is None:
        return quality.default_text(), f"localai/data/{quality.DEFAULT_TEXT}"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LocalAIError(f"--text {path} is not UTF-8 text") from None
    except OSError as exc:
        raise LocalAIError(f"cannot read --text {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise LocalAIError(f"--text {path} is empty")
    return text, str(path)


def _reference(ref: str, ctx: int, args: argparse.Namespace, text: str, tokens: list[int],
               bos: int | None) -> tuple[Any, Any]:
    """(the loaded reference, its scorer), after checking that it reads the text as the same tokens."""
    import localai
    from localai.quality import TransformersReference, is_checkpoint

    if is_checkpoint(Path(ref).expanduser()):
        reference = TransformersReference(Path(ref).expanduser(), threads=args.threads)
        theirs = reference.tokenize(text)
        if theirs is None:
            raise LocalAIError(f"{ref} has no tokenizer.json: cannot check that it reads the text as the model's "
                               "tokens, which KL needs")
        if theirs != tokens:
            raise LocalAIError(f"{ref} tokenizes the text differently from the model: KL needs the same tokens")
        return reference, reference
    loaded = localai.load(ref, n_ctx=ctx, n_threads=args.threads, device=args.device)
    if loaded.backend.tokenize(text, add_bos=False, special=False) != tokens or loaded.bos_id != bos:
        loaded.close()
        raise LocalAIError(f"{ref} tokenizes the text differently from the model: KL needs the same tokens")
    return loaded, loaded.backend.logits


def _name_of(reference: Any, given: str | None) -> str | None:
    manifest = getattr(reference, "manifest", None)
    return manifest.name if manifest is not None else given


def _quality_table(report: Any) -> str:
    from localai.quality import QualityReport

    assert isinstance(report, QualityReport)
    lines = [
        ("model", report.model),
        ("text", f"{report.text}: {report.tokens} tokens, {report.chunks} chunk(s) of {report.ctx}, "
                 f"{report.scored} predictions scored"),
        ("perplexity", f"{report.perplexity:.4f}"),
    ]
    if report.reference is not None:
        assert report.reference_perplexity is not None and report.kl_mean is not None
        lines += [
            ("reference", report.reference),
            ("reference perplexity", f"{report.reference_perplexity:.4f} (model / reference "
                                     f"x{report.perplexity / report.reference_perplexity:.4f})"),
            ("KL divergence", f"mean {report.kl_mean:.3e}, p99 {report.kl_p99:.3e}, max {report.kl_max:.3e}"),
            ("top-1 agreement", f"{report.top1_agreement:.2%}"),
            ("logit difference", f"max {report.max_abs_logit_diff:.3e}, mean {report.mean_abs_logit_diff:.3e}"),
        ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in lines)


# --- task mode ---------------------------------------------------------------------------------------


def _sweep(args: argparse.Namespace) -> int:
    import localai
    from localai.tasks import task as task_named
    from localai.tasks.runner import greedy, parse_budgets, sweep

    task = task_named(args.task)
    budgets = parse_budgets(args.budgets or DEFAULT_BUDGETS)
    n = args.n if args.n is not None else 200
    if n < 1:
        raise LocalAIError(f"--n must be at least 1, got {n}")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise LocalAIError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    if args.csv is not None:
        check_writable(args.csv, "--csv")
    model = localai.load(args.model, n_threads=args.threads, device=args.device)
    try:
        name = model.manifest.name
        options = greedy(model, max_tokens=args.max_tokens) if args.max_tokens else greedy(model)
        with progress_bar("problems", n * len(budgets)) as advance:
            rows = sweep(model, task, task.problems(n), budgets, options, on_problem=lambda: advance(1))
    finally:
        model.close()
    if args.json:
        print(json.dumps({"model": name, "task": args.task, "problems": n,
                          "csv": None if args.csv is None else str(args.csv),
                          "results": [r.to_dict() for r in rows]}, indent=2))
    else:
        print(_sweep_report(name, args.task, n, rows))
    if args.csv is not None:
        write_text_atomic(args.csv, _sweep_csv(rows))  # after printing: a bad path never loses the results
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0


def _sweep_csv(rows: list[Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0].to_dict()), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.to_dict())
    return out.getvalue()


def _sweep_report(model: str, task: str, n: int, rows: list[Any]) -> str:
    """A table, then a bar chart of accuracy per budget."""
    labels = ["off (0)" if r.budget == 0 else "unlimited" if r.budget is None else str(r.budget) for r in rows]
    width = max(len("budget"), *(len(label) for label in labels))
    lines = [f"{model} on {task}: {n} problems per budget, greedy", "",
             f"{'budget':>{width}}  accuracy  mean reasoning tokens  mean latency (ms)"]
    for label, row in zip(labels, rows, strict=True):
        s = row.score
        lines.append(f"{label:>{width}}  {s.accuracy:>8.1%}  {s.mean_reasoning_tokens:>21.1f}  "
                     f"{s.mean_latency_ms:>17.0f}")
    lines += ["", "accuracy"]
    for label, row in zip(labels, rows, strict=True):
        lines.append(f"{label:>{width}} │{bar(row.score.accuracy, CHART_WIDTH)}│ {row.score.accuracy:.1%}")
    return "\n".join(lines)


def bar(fraction: float, width: int) -> str:
    """`fraction` of `width` cells drawn in block characters (eighths), padded with spaces."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    return text.ljust(width)
