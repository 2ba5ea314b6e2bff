"""Does `localai bench` measure the runtime, not itself? Its pp/tg numbers next to a plain llama-cpp-python loop.

    .venv/bin/python benchmarks/bench_overhead.py [GGUF_PACKAGE ...] [--rounds 3] [-p 512] [-n 128] [-r 3]

Default packages: the ~250M-parameter Nemotron-H of benchmarks/convert_gguf.py as GGUF f16 and q4_k_m
(converted on first use in --workdir). Each round runs, for each package, `localai bench`'s measurement
(a fresh child process, as the command does) and then the plain loop in a fresh child process of its
own: `Llama.eval` on the same random tokens, same threads, batch and KV cache type, one warm-up and -r
measured repetitions, each generated token the argmax of llama.cpp's logits. The table gives medians
over rounds of each side's mean tokens/s and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from convert_gguf import CONFIG, build_checkpoint

from localai.bench import BenchSettings, measure_isolated
from localai.model import resolve

PLAIN_LOOP = """
import json, statistics, sys, time
import llama_cpp, numpy as np
path, threads, n_prompt, n_gen, reps, kv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \\
    int(sys.argv[5]), sys.argv[6]
kv_type = llama_cpp.GGML_TYPE_F32 if kv == "f32" else llama_cpp.GGML_TYPE_F16
n_ctx = -(-max(n_prompt, n_gen + 1) // 256) * 256
llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_batch=min(512, n_ctx), n_ubatch=min(512, n_ctx), n_threads=threads,
                      n_threads_batch=threads, type_k=kv_type, type_v=kv_type, verbose=False)
rng = np.random.default_rng(0)
prompt = rng.integers(0, llm.n_vocab(), n_prompt).tolist()
first = int(rng.integers(0, llm.n_vocab()))

def pp():
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    return n_prompt / (time.perf_counter() - start)

def tg():
    llm.reset()
    token = first
    start = time.perf_counter()
    for _ in range(n_gen):
        llm.eval([token])  # keeps no logits without logits_all: read llama.cpp's output row
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        token = int(np.argmax(logits))
    return n_gen / (time.perf_counter() - start)

result = {}
for name, test in (("pp", pp), ("tg", tg)):
    test()
    result[name] = statistics.fmean(test() for _ in range(reps))
print(json.dumps(result))
"""


def plain_loop(gguf: Path, threads: int, n_prompt: int, n_gen: int, reps: int, kv: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PLAIN_LOOP, str(gguf), str(threads), str(n_prompt), str(n_gen),
                          str(reps), kv], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="*", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("-r", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.p < 1 or args.n < 1:
        parser.error("the comparison needs both tests: -p and -n must be at least 1")
    packages = args.packages or default_packages(args.workdir)
    settings = BenchSettings(n_prompt=args.p, n_gen=args.n, repetitions=args.r, threads=args.threads)

    results: dict[Path, dict[str, list[float]]] = {p: {"localai pp": [], "plain pp": [], "localai tg": [],
                                                       "plain tg": []} for p in packages}
    for _ in range(args.rounds):
        for package in packages:
            rows = {row.test[:2]: row for row in measure_isolated(str(package), settings)}
            artifact = resolve(package).manifest.artifacts[0]
            plain = plain_loop(package / artifact.path, args.threads, args.p, args.n, args.r,
                               "f32" if artifact.quant == "f32" else "f16")
            results[package]["localai pp"].append(rows["pp"].tokens_per_s)
            results[package]["localai tg"].append(rows["tg"].tokens_per_s)
            results[package]["plain pp"].append(plain["pp"])
            results[package]["plain tg"].append(plain["tg"])

    print(f"pp{args.p} / tg{args.n}, {args.threads} threads, {args.r} repetitions per run after a warm-up, "
          f"medians of {args.rounds} rounds")
    print("| package | test | localai bench (t/s) | plain llama-cpp-python loop (t/s) | localai / plain |")
    print("|---|---|---:|---:|---:|")
    for package, sides in results.items():
        for test in ("pp", "tg"):
            ours, theirs = statistics.median(sides[f"localai {test}"]), statistics.median(sides[f"plain {test}"])
            print(f"| {resolve(package).manifest.name} | {test} | {ours:.2f} | {theirs:.2f} | x{ours / theirs:.3f} |")


def default_packages(workdir: Path) -> list[Path]:
    from converters import convert

    src = workdir / "nemotron-h-250m-bf16"
    if not (src / "model.safetensors").is_file():
        print(f"building checkpoint: {build_checkpoint(src, CONFIG) / 1e6:.0f}M parameters", file=sys.stderr)
    packages = []
    for quant in ("f16", "q4_k_m"):
        out = workdir / f"bench-gguf-{quant}"
        if not out.is_dir():
            convert(str(src), quant=quant, output=out, name=f"bench-gguf-{quant}")
        packages.append(out)
    return packages


if __name__ == "__main__":
    main()
