"""Benchmark: time to first token per turn of a 20-turn chat sent over HTTP with the official `openai`
client: `localai serve` against llama-cpp-python's own server (`python -m llama_cpp.server`) on the same
GGUF, in the same run, one server at a time.

    .venv/bin/pip install sse-starlette starlette-context pydantic-settings   # llama_cpp.server's [server] extra
    .venv/bin/python benchmarks/serve_turns.py [--package DIR] [--turns 20] [--threads 2] [--rounds 3]

Default model: the ~250M Nemotron-H hybrid of benchmarks/convert_gguf.py as GGUF q4_k_m (converted on
first use in --workdir). Each turn is a ~50-token user message, thinking off. As a client does, every
request sends the whole conversation so far. TTFT is the client's wait for a one-token answer (the prompt
processed, one token sampled, and HTTP): a random-weight model's tokens are often no text at all, so the
first streamed text would not mark the first token. The assistant turns put back into the history are
fixed sentences of about 16 tokens, so both servers see exactly the same prompts. Each round runs the
conversation once per server; the table shows per-turn medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

TOPICS = ["rivers", "mountains", "old towns", "bridges", "forests", "harbours", "deserts", "islands", "lakes", "roads"]


def user_turn(i: int) -> str:
    """About 50 tokens with this benchmark's tokenizer."""
    topic = TOPICS[i % len(TOPICS)]
    return f"Question {i + 1}: on a walking trip in spring, which {topic} are worth a detour?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not start: {' '.join(command)}")


def answer(i: int) -> str:
    """The assistant turn both servers get back in the history (about 16 tokens), the same for both."""
    return f"The {TOPICS[i % len(TOPICS)]} near the old road are worth it; plan half a day."


def conversation(port: int, model: str, turns: int) -> list[tuple[float, int | None]]:
    """(TTFT ms, cached prompt tokens if the server says) of every turn."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a helpful assistant."}]
    rows = []
    for turn in range(turns):
        messages.append({"role": "user", "content": user_turn(turn)})
        sent = time.perf_counter()
        reply = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=1,
                                               extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        elapsed = (time.perf_counter() - sent) * 1000
        details = reply.usage.prompt_tokens_details if reply.usage else None
        rows.append((elapsed, details.cached_tokens if details else None))
        messages.append({"role": "assistant", "content": answer(turn)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, help="GGUF package (default: the 250M Nemotron-H, q4_k_m)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localai-bench"))
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    package = args.package or default_package(args.workdir)
    manifest = json.loads((package / "manifest.json").read_text())
    gguf = package / manifest["artifacts"][0]["path"]
    servers = {
        "localai serve": lambda port: [sys.executable, "-m", "localai.cli", "serve", str(package), "--port", str(port),
                                       "--threads", str(args.threads), "--ctx", "4096"],
        "llama_cpp.server": lambda port: [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port",
                                          str(port), "--n_threads", str(args.threads), "--n_threads_batch",
                                          str(args.threads), "--n_ctx", "4096", "--model_alias", manifest["name"]],
    }
    results: dict[str, list[list[tuple[float, int | None]]]] = {name: [] for name in servers}
    for _ in range(args.rounds):
        for name, command in servers.items():
            port = free_port()
            process = start(command(port), port)
            try:
                results[name].append(conversation(port, manifest["name"], args.turns))
            finally:
                process.terminate()
                process.wait(timeout=60)
    report(results, args, manifest["name"])


def default_package(workdir: Path) -> Path:
    from convert_gguf import CONFIG, build_checkpoint

    from converters import convert

    src, package = workdir / "nemotron-h-250m-bf16", workdir / "serve-hybrid-gguf-q4_k_m"
    if not (src / "model.safetensors").is_file():
        build_checkpoint(src, CONFIG)
    if not package.is_dir():
        convert(str(src), quant="q4_k_m", output=package)
    return package


def report(results: dict[str, list[list[tuple[float, int | None]]]], args: argparse.Namespace, name: str) -> None:
    medians = {server: [statistics.median(run[t][0] for run in runs) for t in range(args.turns)]
               for server, runs in results.items()}
    cached = [results["localai serve"][0][t][1] for t in range(args.turns)]
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads; {name}; "
          f"{args.turns} turns, medians of {args.rounds} rounds\n")
    print("| turn | localai serve TTFT ms | cached prompt tokens | llama_cpp.server TTFT ms |")
    print("|---:|---:|---:|---:|")
    for t in range(args.turns):
        print(f"| {t + 1} | {medians['localai serve'][t]:.0f} | {cached[t]} | {medians['llama_cpp.server'][t]:.0f} |")
    for server, values in medians.items():
        print(f"\n{server}: turn {args.turns} / turn 2 = x{values[-1] / values[1]:.2f}", end="")
    print()


if __name__ == "__main__":
    main()
