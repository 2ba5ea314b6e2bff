"""Logit fidelity of every GGUF type against transformers float32, on the test suite's tiny models.

    PYTHONPATH=. .venv/bin/python benchmarks/quant_quality.py [--workdir /tmp/localai-quality]

For each model and type: max |logit difference|, mean KL(reference || converted) and top-1 agreement over
80 random tokens. Random weights quantize worse than trained ones: these numbers guard against
regressions, they are not quality claims. Needs the dev extra (torch, transformers).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

import localai
from converters import convert
from tests import zoo

TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q4_k_m", "q4_0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-quality"))
    parser.add_argument("--models", nargs="*", default=list(zoo.ZOO))
    args = parser.parse_args()
    print("| model | type | max abs logit diff | mean KL | top-1 agreement |")
    print("|---|---|---|---|---|")
    for name in args.models:
        checkpoint = zoo.checkpoint_in(args.workdir, name)
        tokens = zoo.random_tokens(80, 500, seed=2)
        reference = zoo.reference_logits(zoo.reference_model(checkpoint), tokens)
        for quant in TYPES:
            out = args.workdir / f"{name}-{quant}"
            shutil.rmtree(out, ignore_errors=True)
            convert(str(checkpoint), quant=quant, output=out)
            model = localai.load(out, n_ctx=256)
            logits = model.backend.logits(tokens)
            model.close()
            top1 = float((logits.argmax(-1) == reference.argmax(-1)).mean())
            kl = zoo.mean_kl(reference, logits)
            print(f"| {name} | {quant} | {np.abs(logits - reference).max():.1e} | {kl:.1e} | {top1:.0%} |")


if __name__ == "__main__":
    main()
