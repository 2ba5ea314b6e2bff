"""`localai bench --endpoint URL --model NAME`: the tests of localai/bench.py run against any
OpenAI-compatible server (localai serve, llama.cpp's server, Ollama, vLLM, NIM), measured in this client,
so that served and local numbers sit in one table.

- `pp<P>`: /v1/completions of a prompt of about P tokens (random words, new ones every run, so that no
  prefix cache answers it) and one token out; TTFT is the time to that token; tokens/s is the prompt
  tokens the server counted, over TTFT.
- `tg<N>`: N tokens out of a short prompt, streamed; inter-token latencies are the gaps between streamed
  pieces; tokens/s is the tokens after the first over the time after the first.
- `chat<T>`: the T-turn conversation of `localai bench --turns`, each turn sending the whole history, as
  clients do; TTFT of every turn.
Times include HTTP and the server's own queueing: what a client sees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from localai.bench import (
    CHAT_ANSWER_TOKENS,
    CHAT_SYSTEM,
    BenchRow,
    BenchSettings,
    Probe,
    chat_question,
    repeat,
    row_rates,
)
from localai.errors import LocalAIError

WORDS = ("river", "mountain", "town", "bridge", "forest", "harbour", "desert", "island", "lake", "road", "garden",
         "market", "window", "letter", "morning", "evening", "winter", "summer", "number", "music", "paper", "stone",
         "cloud", "light")
TIMEOUT_S = 600.0


class _Client:
    def __init__(self, url: str, model: str, api_key: str | None) -> None:
        self.base = url.rstrip("/")
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(headers=headers, timeout=TIMEOUT_S)

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[tuple[float, dict[str, Any]]]:
        """(arrival time, chunk) of each server-sent event of POST `path`."""
        request = {"model": self.model, "stream": True, "stream_options": {"include_usage": True}, **body}
        try:
            with self.http.stream("POST", f"{self.base}{path}", json=request) as response:
                if response.status_code != 200:
                    response.read()
                    raise LocalAIError(f"{self.base}{path} answered {response.status_code}: {response.text[:200]}")
                for line in response.iter_lines():
                    if line.startswith("data:") and line[5:].strip() != "[DONE]":
                        yield time.perf_counter(), json.loads(line[5:])
        except httpx.HTTPError as exc:
            raise LocalAIError(f"cannot reach {self.base}: {exc}") from None


def _text(chunk: dict[str, Any]) -> str:
    choice = (chunk.get("choices") or [{}])[0]
    delta = choice.get("delta") or {}
    return choice.get("text") or delta.get("content") or delta.get("reasoning_content") or ""


def _prompt_processing(client: _Client, n_words: int, rng: np.random.Generator) -> dict[str, Any]:
    prompt = " ".join(rng.choice(WORDS, n_words))
    start = time.perf_counter()
    first, prompt_tokens = None, n_words
    for arrived, chunk in client.stream("/completions", {"prompt": prompt, "max_tokens": 1, "temperature": 0}):
        first = first or (arrived if _text(chunk) or chunk.get("choices") else None)
        prompt_tokens = (chunk.get("usage") or {}).get("prompt_tokens", prompt_tokens)
    ttft = (first or time.perf_counter()) - start
    return {"tokens_per_s": prompt_tokens / ttft, "ttft_s": ttft}


def _generation(client: _Client, n: int, rng: np.random.Generator) -> dict[str, Any]:
    body = {"prompt": " ".join(rng.choice(WORDS, 8)), "max_tokens": n, "temperature": 0, "ignore_eos": True}
    arrivals = [arrived for arrived, chunk in client.stream("/completions", body) if _text(chunk)]
    if len(arrivals) < 2:
        raise LocalAIError(f"the server streamed {len(arrivals)} piece(s) of text for a {n}-token answer")
    gaps = np.diff(arrivals).tolist()
    return {"tokens_per_s": (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), "latencies_s": gaps}


def _chat(client: _Client, turns: int) -> dict[str, Any]:
    messages = [{"role": "system", "content": CHAT_SYSTEM}]
    ttfts, decoded, decode_s = [], 0, 0.0
    for turn in range(turns):
        messages.append({"role": "user", "content": chat_question(turn)})
        body = {"messages": messages, "max_tokens": CHAT_ANSWER_TOKENS, "temperature": 0,
                "chat_template_kwargs": {"enable_thinking": False}}
        start = time.perf_counter()
        arrivals, text = [], []
        for arrived, chunk in client.stream("/chat/completions", body):
            if piece := _text(chunk):
                arrivals.append(arrived)
                text.append(piece)
        ttfts.append((arrivals[0] if arrivals else time.perf_counter()) - start)
        if len(arrivals) > 1:
            decoded += len(arrivals) - 1
            decode_s += arrivals[-1] - arrivals[0]
        messages.append({"role": "assistant", "content": "".join(text)})
    return {"tokens_per_s": decoded / decode_s if decode_s else 0.0, "ttft_s": ttfts}


def measure_endpoint(url: str, model: str, settings: BenchSettings, *, api_key: str | None = None,
                     on_step: Callable[[str], None] = lambda step: None) -> list[BenchRow]:
    """Every test of `settings` against model `model` of the OpenAI-compatible server at `url` (…/v1)."""
    client, probe, rng = _Client(url, model, api_key), Probe(), np.random.default_rng(0)
    tests: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if settings.n_prompt:
        tests.append((f"pp{settings.n_prompt}", lambda: _prompt_processing(client, settings.n_prompt, rng)))
    if settings.n_gen:
        tests.append((f"tg{settings.n_gen}", lambda: _generation(client, settings.n_gen, rng)))
    if settings.turns:
        tests.append((f"chat{settings.turns}", lambda: _chat(client, settings.turns)))
    results = [repeat(name, run, settings.repetitions, on_step, probe) for name, run in tests]
    host = urlsplit(url).netloc or url
    return [BenchRow(model=model, format="http", quant="", backend=f"endpoint {host}", device="", threads=0,
                     thread_policy="the server's", test=test, load_s=0.0, peak_rss_mb=None, gpu_mb=None,
                     **row_rates(rates), **extra)
            for test, rates, extra in results]
