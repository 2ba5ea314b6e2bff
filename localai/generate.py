"""Token-level generation loop over any backend: prefill once, then one token at a time.

The loop yields each token as it is sampled, with the text it completes: a token can end in the middle
of a UTF-8 character, so text is decoded incrementally from token bytes (bytes of a character cut off
by the token limit are not text and are dropped).
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from localai.backends.base import Backend
from localai.sampling import Sampler


@dataclass(frozen=True)
class GeneratedToken:
    id: int
    text: str


@dataclass
class GenerationStats:
    """Filled in while a generation runs; final once the iterator is exhausted."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None  # "stop" (end-of-turn token), "length" (max tokens or context full)
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    tokens: list[int] = field(default_factory=list)


def generate(
    backend: Backend,
    prompt: Sequence[int],
    sampler: Sampler,
    *,
    max_tokens: int,
    stop_tokens: frozenset[int] = frozenset(),
    stats: GenerationStats | None = None,
) -> Iterator[GeneratedToken]:
    """Generate up to `max_tokens` after `prompt` from a fresh state.

    Stops at an end-of-generation token (not yielded), at `max_tokens`, or when the context is full.
    """
    stats = stats if stats is not None else GenerationStats()
    stats.prompt_tokens = len(prompt)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    backend.reset()
    started = time.perf_counter()
    logits = backend.eval(prompt)
    stats.prefill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    stats.finish_reason = "length"
    for _ in range(max_tokens):
        token = sampler(logits)
        if backend.is_end_of_generation(token) or token in stop_tokens:
            stats.finish_reason = "stop"
            break
        stats.tokens.append(token)
        stats.completion_tokens += 1
        yield GeneratedToken(token, decoder.decode(backend.token_bytes(token)))
        if backend.n_past >= backend.n_ctx:
            break
        logits = backend.eval([token])
    stats.decode_seconds = time.perf_counter() - started
