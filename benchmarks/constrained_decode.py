"""Benchmark: what constrained decoding costs per token on the ~250M-parameter Nemotron-H, GGUF q4_k_m.

    .venv/bin/python benchmarks/constrained_decode.py [--workdir DIR] [--rounds 5] [--baseline-tree DIR]

The model is benchmarks/convert_gguf.py's (hidden 1024, 25 layers), with a real 32,768-token byte-level
BPE vocabulary (trained here on this Python installation's source files, so the grammar engine masks a
vocabulary of the size the model has) instead of the 512-token tokenizer padded to 32k that other
benchmarks use. Random weights, temperature 1.0, no thinking, 2 threads; each round runs every case once,
in the same process, and reports the decode rate (tokens after the first, per second):

- free: no constraint;
- JSON schema: an object holding an array of 40 strings of 40 to 60 characters (the random model writes
  one long answer inside the grammar; it never ends before the token limit);
- regex: `[a-z ,.]{2000}`.

With `--baseline-tree DIR` (a checkout of the commit before constrained decoding, e.g.
`git worktree add /tmp/base e4c955f`), "free" also runs there in a child process of its own, alternating
with a child running this tree: the token loop without a guide must be as fast as before it existed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from convert_gguf import CONFIG, VOCAB, random_nemotron_h_weights, write_bf16_safetensors

from localai.demo_model import nemotron_h_config, save_tokenizer, train_tokenizer

TOKENS = 256
SCHEMA = {"type": "object", "properties": {"lines": {"type": "array", "minItems": 40, "maxItems": 40,
                                                      "items": {"type": "string", "minLength": 40,
                                                                "maxLength": 60}}},
          "required": ["lines"], "additionalProperties": False}
REGEX = "[a-z ,.]{2000}"
RATE = """
import json, statistics, sys
import localai
from localai import structured
model = localai.load(sys.argv[1], n_ctx=1024, n_threads=2)
rates = []
for seed in range({seeds}):
    final = model.chat([{{"role": "user", "content": "Tell me a story."}}], temperature=1.0, seed=seed, think=False,
                       max_tokens={tokens})
    rates.append(final.timings.decode_tokens_per_s)
print(json.dumps(statistics.median(rates)))
"""


def corpus() -> list[str]:
    """This Python installation's standard library sources: real code and prose, offline."""
    texts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="ignore")
        texts.append(text)
        size += len(text)
        if size > 40 << 20:
            break
    return texts


def model(workdir: Path) -> Path:
    """The package, built on first use: tokenizer, bf16 checkpoint, GGUF q4_k_m."""
    from converters import convert

    source, package = workdir / "nemotron-h-250m-32k-bf16", workdir / "constrained-q4_k_m"
    if not (source / "model.safetensors").is_file():
        source.mkdir(parents=True, exist_ok=True)
        tok = train_tokenizer(VOCAB, corpus=corpus())
        save_tokenizer(tok, source)
        config = nemotron_h_config(tok.get_vocab_size(), **CONFIG)
        (source / "config.json").write_text(json.dumps(config, indent=2))
        write_bf16_safetensors(source / "model.safetensors", random_nemotron_h_weights(config))
    if not package.is_dir():
        convert(str(source), quant="q4_k_m", output=package)
    return package


def rates(package: Path, rounds: int) -> dict[str, list[float]]:
    """Decode rates of every case, `rounds` times each, interleaved (after the one-time vocabulary)."""
    import localai
    from localai import structured
    from localai.guide import vocabulary

    loaded = localai.load(package, n_ctx=1024, n_threads=2)
    started = time.perf_counter()
    vocabulary(loaded.backend, loaded.format.end_of_turn_ids)
    print(f"the vocabulary as llguidance sees it, built once per loaded model: "
          f"{time.perf_counter() - started:.2f} s")
    constraints = {"free": None, "JSON schema": structured.json_schema(SCHEMA),
                   "regex": structured.regex(REGEX)}
    found: dict[str, list[float]] = {name: [] for name in constraints}
    for round_ in range(rounds):
        for name, constraint in constraints.items():
            final = loaded.chat([{"role": "user", "content": "Tell me a story."}], constraint=constraint,
                                temperature=1.0, seed=round_, think=False, max_tokens=TOKENS)
            assert final.usage.completion_tokens == TOKENS or constraint is None, (name, final.finish_reason)
            found[name].append(final.timings.decode_tokens_per_s)
    loaded.close()
    return found


def free_rate(tree: Path, package: Path, seeds: int) -> float:
    """The median decode rate without a constraint, with localai imported from `tree`, in a child process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", RATE.format(seeds=seeds, tokens=TOKENS), str(package)], env=env,
                         capture_output=True, text=True, check=True, cwd=tree)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-tree", type=Path, help="a checkout without constrained decoding")
    args = parser.parse_args()
    package = model(args.workdir)
    found = rates(package, args.rounds)
    print(f"machine: {platform.processor() or platform.machine()}, 2 threads, Python {platform.python_version()}; "
          f"~250M Nemotron-H, 32,768-token vocabulary, GGUF q4_k_m; {TOKENS} tokens, {args.rounds} rounds")
    print("| case | decode tokens/s (median) | all rounds | vs free |")
    print("|---|---|---|---|")
    free = statistics.median(found["free"])
    for name, values in found.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {', '.join(f'{v:.1f}' for v in values)} | x{median / free:.3f} |")
    if args.baseline_tree:
        here = Path(__file__).resolve().parents[1]
        pairs = [(free_rate(args.baseline_tree, package, 3), free_rate(here, package, 3)) for _ in range(args.rounds)]
        before, now = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        print(f"free, child processes alternating: before {before:.1f} tok/s, now {now:.1f} tok/s, "
              f"x{now / before:.3f} (rounds: {', '.join(f'{a:.1f}/{b:.1f}' for a, b in pairs)})")


if __name__ == "__main__":
    main()
