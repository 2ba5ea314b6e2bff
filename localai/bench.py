"""Speed and memory of a model on this machine: what `localai bench` measures.

The tests follow llama.cpp's `llama-bench`, so that numbers compare with the ones people already have:
- `pp<P>`: one call that processes P random tokens from an empty state; tokens/s = P / its time. TTFT is
  that time plus choosing the first token.
- `tg<N>`: N calls of one token each from an empty state (each token the previous call's argmax);
  tokens/s = N / their time; inter-token latency (ITL) percentiles are over every call of every repetition.
- `chat<T>` (optional): a T-turn conversation through the chat engine with short user messages and
  greedy answers of at most CHAT_ANSWER_TOKENS tokens without thinking, as `localai chat` runs it (turn-state
  reuse on): TTFT of every turn, decode tokens/s.
Each test runs once unmeasured (warm-up; for the chat test, a 2-turn chat), then `repetitions` times;
tokens/s is mean +- sample std.

Every model is measured in a child process of its own (`python -m localai.bench`), so that its load
time, peak RSS and GPU memory are its own, not left over from the model before it. The child reports
progress and rows as JSON lines on stdout.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from localai.errors import LocalAIError

CHAT_ANSWER_TOKENS = 24
CHAT_SYSTEM = "You are a helpful assistant. Answer briefly."
CHAT_SETTINGS = {"temperature": 0.0, "max_tokens": CHAT_ANSWER_TOKENS, "think": False}
CHAT_CONTEXT = 4096


def chat_question(turn: int) -> str:
    """The user message of turn `turn` (from 0) of the chat test."""
    return f"Question {turn + 1}: what comes after {turn * 7} in the sequence?"


@dataclass(frozen=True)
class BenchSettings:
    """What to measure; 0 skips a test."""

    n_prompt: int = 512
    n_gen: int = 128
    repetitions: int = 3
    turns: int = 0
    threads: int | None = None
    device: str = "auto"
    n_ctx: int | None = None  # default: room for the largest test

    def __post_init__(self) -> None:
        for name in ("n_prompt", "n_gen", "turns"):
            if getattr(self, name) < 0:
                raise LocalAIError(f"{name.replace('n_', '')} must be >= 0, got {getattr(self, name)}")
        if self.repetitions < 1:
            raise LocalAIError(f"repetitions must be >= 1, got {self.repetitions}")
        if self.threads is not None and self.threads < 1:
            raise LocalAIError(f"threads must be >= 1, got {self.threads}")
        if not (self.n_prompt or self.n_gen or self.turns):
            raise LocalAIError("nothing to measure: prompt, generation and turns are all 0")
        if self.n_ctx is not None and self.n_ctx < self.needed_context:
            raise LocalAIError(f"a context of {self.n_ctx} tokens is too small for these tests "
                               f"(they need {self.needed_context})")

    @property
    def needed_context(self) -> int:
        return max(self.n_prompt, self.n_gen + 1, CHAT_CONTEXT if self.turns else 0)

    @property
    def tests(self) -> list[str]:
        return [name for name, n in (("pp", self.n_prompt), ("tg", self.n_gen), ("chat", self.turns)) if n]

    def steps(self) -> int:
        """Progress units of one model: the load, then every warm-up and repetition."""
        return 1 + len(self.tests) * (1 + self.repetitions)


@dataclass
class BenchRow:
    """One model x test. Times in ms, memory in MB; None where a figure does not apply."""

    model: str
    format: str
    quant: str
    backend: str
    device: str
    threads: int  # the most threads the runtime used
    thread_policy: str  # how it chose them (threads.py): "adaptive, up to 2", "fixed 2, no spinning"
    test: str
    tokens_per_s: float
    tokens_per_s_std: float | None  # None with one repetition: no spread to report
    ttft_ms: float | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None
    load_s: float
    peak_rss_mb: float | None
    gpu_mb: float | None
    samples_tokens_per_s: list[float] = field(default_factory=list)
    ttft_per_turn_ms: list[float] | None = None  # chat test: mean TTFT of each turn over the repetitions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Probe:
    """Load time and memory of the model in this process."""

    load_s: float = 0.0
    gpu_peak: int | None = None  # this process's GPU memory, the most seen at the samples

    def sample_gpu(self) -> None:
        from localai.machine import process_gpu_memory_bytes

        used = process_gpu_memory_bytes()
        if used is not None:
            self.gpu_peak = max(self.gpu_peak or 0, used)


def measure(model_ref: str, settings: BenchSettings, on_step: Callable[[str], None] = lambda step: None
            ) -> list[BenchRow]:
    """Load `model_ref` in this process and run every test of `settings`; `on_step` hears of each step."""
    import localai
    from localai.backends import BACKENDS
    from localai.machine import peak_rss_bytes

    probe = Probe()
    started = time.perf_counter()
    model = localai.load(model_ref, n_ctx=settings.n_ctx or settings.needed_context, n_threads=settings.threads,
                         device=settings.device)
    probe.load_s = time.perf_counter() - started
    probe.sample_gpu()
    on_step("loaded")
    try:
        results: list[tuple[str, list[float], dict[str, Any]]] = []
        rng = np.random.default_rng(0)
        if settings.n_prompt:
            tokens = rng.integers(0, model.backend.n_vocab, settings.n_prompt).tolist()
            results.append(repeat(f"pp{settings.n_prompt}", lambda: _prompt_processing(model.backend, tokens),
                                   settings.repetitions, on_step, probe))
        if settings.n_gen:
            first = int(rng.integers(0, model.backend.n_vocab))
            results.append(repeat(f"tg{settings.n_gen}", lambda: _generation(model.backend, first, settings.n_gen),
                                   settings.repetitions, on_step, probe))
        if settings.turns:
            results.append(repeat(f"chat{settings.turns}", lambda: _chat(model, settings.turns),
                                   settings.repetitions, on_step, probe, warm_up=lambda: _chat(model, 2)))
        artifact = next(a for a in model.manifest.artifacts if a.format in BACKENDS)
        peak = peak_rss_bytes()
        gpu = probe.gpu_peak
        return [BenchRow(model=model.manifest.name, format=artifact.format, quant=artifact.quant,
                         backend=model.backend.name, device=model.backend.device,
                         threads=model.backend.max_threads, thread_policy=model.backend.thread_policy, test=test,
                         load_s=round(probe.load_s, 3), peak_rss_mb=_mb(peak), gpu_mb=_mb(gpu),
                         **row_rates(rates), **extra)
                for test, rates, extra in results]
    finally:
        model.close()


def repeat(test: str, run_once: Callable[[], dict[str, Any]], repetitions: int, on_step: Callable[[str], None],
            probe: Probe, warm_up: Callable[[], object] | None = None) -> tuple[str, list[float], dict[str, Any]]:
    (warm_up or run_once)()  # first-call allocations and caches are not what is measured
    on_step(f"{test} warm-up")
    runs = []
    for i in range(repetitions):
        runs.append(run_once())
        probe.sample_gpu()
        on_step(f"{test} {i + 1}/{repetitions}")
    rates = [r["tokens_per_s"] for r in runs]
    if test.startswith("pp"):
        extra = {"ttft_ms": _ms(statistics.fmean(r["ttft_s"] for r in runs))}
    elif test.startswith("tg"):
        latencies = [s for r in runs for s in r["latencies_s"]]
        extra = {"itl_p50_ms": _ms(float(np.percentile(latencies, 50))),
                 "itl_p95_ms": _ms(float(np.percentile(latencies, 95)))}
    else:
        per_turn = [statistics.fmean(turn) for turn in zip(*(r["ttft_s"] for r in runs), strict=True)]
        extra = {"ttft_ms": _ms(per_turn[-1]), "ttft_per_turn_ms": [_ms(t) for t in per_turn]}
    return test, rates, {"ttft_ms": None, "itl_p50_ms": None, "itl_p95_ms": None, **extra}


def row_rates(rates: list[float]) -> dict[str, Any]:
    """A row's tokens/s fields from the runs' rates: mean, sample std (None for one run), the samples."""
    return {"tokens_per_s": round(statistics.fmean(rates), 2),
            "tokens_per_s_std": round(statistics.stdev(rates), 2) if len(rates) > 1 else None,
            "samples_tokens_per_s": [round(r, 2) for r in rates]}


def _prompt_processing(backend: Any, tokens: list[int]) -> dict[str, Any]:
    backend.reset()
    start = time.perf_counter()
    logits = backend.eval(tokens)
    processed = time.perf_counter()
    int(np.argmax(logits))
    chosen = time.perf_counter()
    return {"tokens_per_s": len(tokens) / (processed - start), "ttft_s": chosen - start}


def _generation(backend: Any, first: int, n: int) -> dict[str, Any]:
    backend.reset()
    token, latencies = first, []
    start = time.perf_counter()
    for _ in range(n):
        before = time.perf_counter()
        token = int(np.argmax(backend.eval([token])))
        latencies.append(time.perf_counter() - before)
    return {"tokens_per_s": n / (time.perf_counter() - start), "latencies_s": latencies}


def _chat(model: Any, turns: int) -> dict[str, Any]:
    from localai.conversation import Conversation
    from localai.events import Notice, collect

    model.turn_states.clear()
    conversation = Conversation(model, model.defaults.changed(**CHAT_SETTINGS), system=CHAT_SYSTEM)
    ttfts, decoded, decode_s = [], 0, 0.0
    for turn in range(turns):
        events = list(conversation.send(chat_question(turn)))
        if any(isinstance(e, Notice) and e.dropped_messages for e in events):
            # from here on turns would measure a trimmed conversation, not a growing one
            raise LocalAIError(f"the {turns}-turn chat outgrew the context of {model.backend.n_ctx} tokens at turn "
                               f"{turn + 1}; give a larger --ctx or fewer --turns")
        final = collect(iter(events))
        ttft_ms = final.timings.ttft_ms or 0.0
        ttfts.append(ttft_ms / 1000)
        decoded += max(0, final.usage.completion_tokens - 1)  # the first token comes from the prompt's logits
        decode_s += (final.timings.total_ms - ttft_ms) / 1000
    return {"tokens_per_s": decoded / decode_s if decode_s else 0.0, "ttft_s": ttfts}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _mb(nbytes: int | None) -> float | None:
    return round(nbytes / 2**20, 1) if nbytes is not None else None


# --- one child process per model ---------------------------------------------------------------------


def measure_isolated(model_ref: str, settings: BenchSettings, on_step: Callable[[str], None] = lambda step: None,
                     *, debug: bool = False) -> list[BenchRow]:
    """`measure` in a fresh Python process; its errors come back as LocalAIError with the child's message."""
    job = json.dumps({"model": model_ref, "settings": asdict(settings), "debug": debug})
    rows: list[BenchRow] = []
    error: str | None = None
    loaded = False
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stderr:
        # -P: the current folder (which may hold another checkout of localai) is not put on sys.path
        child = subprocess.Popen([sys.executable, "-P", "-m", "localai.bench", job], stdout=subprocess.PIPE,
                                 stderr=stderr, text=True, encoding="utf-8")
        try:
            assert child.stdout is not None
            for message in _messages(child.stdout):
                if "step" in message:
                    loaded = loaded or message["step"] == "loaded"
                    on_step(message["step"])
                elif "row" in message:
                    rows.append(BenchRow(**message["row"]))
                elif "error" in message:
                    error = message["error"]
            code = child.wait()
        finally:
            if child.poll() is None:  # interrupted: the child must not outlive the command
                child.kill()
                child.wait()
        stderr.seek(0)
        log = stderr.read()
    if debug and log:
        sys.stderr.write(log)
    if error is not None:
        raise LocalAIError(error)
    if code < 0:
        raise LocalAIError(_killed(model_ref, -code, loaded, log))
    if code != 0:
        last = log.strip().splitlines()[-1] if log.strip() else "no message"
        raise LocalAIError(f"benchmarking {model_ref} failed: the measuring process exited with status {code} "
                           f"({last})")
    return rows


def _killed(model_ref: str, number: int, loaded: bool, log: str) -> str:
    """The line for a child that a signal ended: a runtime's failed assertion (SIGABRT) or crash (SIGSEGV), which
    print little or nothing, or the out-of-memory killer (SIGKILL)."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    cause = "the runtime aborted (SIGABRT)" if name == "SIGABRT" else f"the measuring process was killed by {name}"
    # ggml prints "/build/path/ops.cpp:4132: GGML_ASSERT(eps >= 0.0f) failed" where stderr is not silenced
    where, _, assertion = next((line.strip() for line in log.splitlines() if "GGML_ASSERT" in line), "").partition(": ")
    return (f"benchmarking {model_ref} failed: {cause} while {'running the tests' if loaded else 'loading the model'}"
            + (f" ({where.rsplit('/', 1)[-1]}: {assertion})" if assertion else ""))


def _messages(lines: Any) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue  # a runtime printing on stdout is not part of the protocol
        if isinstance(message, dict):
            yield message


def _child(job_text: str) -> int:
    job = json.loads(job_text)

    def send(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        for row in measure(job["model"], BenchSettings(**job["settings"]), lambda step: send({"step": step})):
            send({"row": row.to_dict()})
    except LocalAIError as exc:
        send({"error": str(exc)})
        if job.get("debug"):
            traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
