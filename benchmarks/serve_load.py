"""Benchmark: a bounded load test of `localai serve`: C concurrent clients each send R chat requests
(the official `openai` client, streaming, loopback only); every request must complete.

    .venv/bin/python benchmarks/serve_load.py [--package DIR] [--clients 16] [--requests 10] [--parallel 1 2]

Default model: the ~250M Nemotron-H hybrid as GGUF q4_k_m (benchmarks/serve_turns.py's). Each request is
a short question with a 16-token greedy answer, thinking off. Reported per `--parallel` value: requests
completed and failed, latency p50 / p95 (client-side, request to last chunk), time to first chunk
p50 / p95, and throughput in requests and generated tokens per second over the whole run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import openai
from serve_turns import default_package, free_port, start


def client_run(port: int, model: str, client_id: int, requests: int, out: list[dict[str, float]],
               failures: list[str]) -> None:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)
    for i in range(requests):
        sent = time.perf_counter()
        first, tokens = None, 0
        try:
            for chunk in client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": f"Client {client_id}, question {i}: why?"}],
                    temperature=0, max_tokens=16, stream=True, stream_options={"include_usage": True},
                    extra_body={"chat_template_kwargs": {"enable_thinking": False}}):
                first = first or time.perf_counter()
                if chunk.usage:
                    tokens = chunk.usage.completion_tokens
        except openai.OpenAIError as exc:
            failures.append(f"client {client_id} request {i}: {exc}")
            continue
        done = time.perf_counter()
        out.append({"latency": done - sent, "first": (first or done) - sent, "tokens": tokens})


def run(package: Path, parallel: int, clients: int, requests: int, threads: int) -> dict[str, float]:
    import json

    name = json.loads((package / "manifest.json").read_text())["name"]
    port = free_port()
    process = start([sys.executable, "-m", "localai.cli", "serve", str(package), "--port", str(port), "--parallel",
                     str(parallel), "--threads", str(threads)], port)
    try:
        warm = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        warm.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        results: list[dict[str, float]] = []
        failures: list[str] = []
        workers = [threading.Thread(target=client_run, args=(port, name, c, requests, results, failures))
                   for c in range(clients)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=60)
    latency = [r["latency"] * 1000 for r in results]
    first = [r["first"] * 1000 for r in results]
    return {"parallel": parallel, "completed": len(results), "failed": len(failures),
            "p50": float(np.percentile(latency, 50)), "p95": float(np.percentile(latency, 95)),
            "first_p50": float(np.percentile(first, 50)), "first_p95": float(np.percentile(first, 95)),
            "rps": len(results) / elapsed, "tps": sum(r["tokens"] for r in results) / elapsed,
            "tokens_mean": statistics.fmean(r["tokens"] for r in results), "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    package = args.package or default_package(args.workdir)
    rows = [run(package, p, args.clients, args.requests, args.threads) for p in args.parallel]
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads per instance; "
          f"{package.name}; {args.clients} clients x {args.requests} requests\n")
    print("| --parallel | completed | failed | latency p50 ms | latency p95 ms | first chunk p50 ms | "
          "first chunk p95 ms | requests/s | generated tokens/s | wall s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['parallel']} | {r['completed']} | {r['failed']} | {r['p50']:.0f} | {r['p95']:.0f} | "
              f"{r['first_p50']:.0f} | {r['first_p95']:.0f} | {r['rps']:.2f} | {r['tps']:.1f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
