"""`localai eval --reference` for several packages against one transformers checkpoint, as one table.

    .venv/bin/python benchmarks/quality_table.py CHECKPOINT PACKAGE [...] [--ctx 512] [--text FILE | --arithmetic N]

The checkpoint is loaded once (transformers, float32) and each package is scored against it on the same
text: the shipped public-domain passages by default, a file, or `--arithmetic N`: N held-out problems of
the demo task written out as question, column-by-column trace and answer (the demo model's own domain).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import localai
from localai.quality import TransformersReference, default_text, evaluate
from localai.tasks import arithmetic


def arithmetic_text(n: int) -> str:
    return "".join(f"{p.question}\n{p.thought}\n{p.answer}\n\n" for p in arithmetic.problems(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--text", type=Path)
    text.add_argument("--arithmetic", type=int, metavar="N")
    args = parser.parse_args()
    body = (args.text.read_text(encoding="utf-8") if args.text else
            arithmetic_text(args.arithmetic) if args.arithmetic else default_text())
    reference = TransformersReference(args.checkpoint, threads=args.threads)
    print("| package | perplexity | reference perplexity | mean KL | KL p99 | top-1 agreement | max abs logit diff "
          "| mean abs logit diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for package in args.packages:
        model = localai.load(package, n_ctx=args.ctx, n_threads=args.threads)
        tokens = model.backend.tokenize(body, add_bos=False, special=False)
        r = evaluate(model.backend.logits, tokens, ctx=args.ctx, bos=model.bos_id, reference=reference)
        print(f"| {model.manifest.name} | {r.perplexity:.4g} | {r.reference_perplexity:.4g} | {r.kl_mean:.2e} | "
              f"{r.kl_p99:.2e} | {r.top1_agreement:.1%} | {r.max_abs_logit_diff:.2e} | {r.mean_abs_logit_diff:.2e} |",
              flush=True)
        model.close()
    print(f"{r.tokens} tokens, {r.chunks} chunk(s) of {args.ctx}, {r.scored} predictions scored per package")


if __name__ == "__main__":
    main()
