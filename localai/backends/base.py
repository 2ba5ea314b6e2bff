"""The backend protocol: what the chat engine, evaluation and parity tests need from a runtime.

A backend holds one sequence state. `eval` appends tokens to it and returns the next-token logits, so
generation prefills once and then feeds one token at a time; `logits` scores a whole sequence from a
fresh state. Sampling, templates and stopping rules live above this seam, so they behave the same on
every backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from localai.errors import BackendError
from localai.package import Artifact, Package

DEVICES = ("auto", "cpu", "cuda", "tensorrt")


@dataclass(frozen=True)
class BackendState:
    """A snapshot of a backend's sequence state, restorable on the backend that took it.

    `data` is the runtime's own form (llama.cpp's serialized state; ONNX Runtime's state tensors);
    `nbytes` is its size: constant for Mamba2 layers, growing with the tokens for attention layers."""

    n_past: int
    nbytes: int
    data: Any = field(repr=False)


class Backend(Protocol):
    """A loaded model bound to one runtime."""

    name: str
    device: str  # where it runs: one of DEVICES but "auto"
    max_threads: int  # the most CPU threads it computes on
    thread_policy: str  # how it chooses them, in words ("adaptive, up to 2"), as benchmarks record it
    n_vocab: int
    n_ctx: int

    @property
    def n_past(self) -> int:
        """Number of tokens in the current state."""
        ...

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Token ids of `text`; `special` lets control-token texts (e.g. "<|im_end|>") map to their ids."""
        ...

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes one token stands for (a token may hold part of a UTF-8 character)."""
        ...

    def is_end_of_generation(self, token: int) -> bool:
        """Whether `token` ends a turn (end-of-sequence, end-of-turn)."""
        ...

    def control_tokens(self) -> frozenset[int]:
        """The control tokens (turn markers, end of sequence, padding): tokens that stand for no text, which
        tokenizing their text without `special` never gives. Constrained decoding never lets a grammar
        spell one."""
        ...

    def eval(self, tokens: Sequence[int]) -> np.ndarray:
        """Append `tokens` to the state; return the float32 logits [n_vocab] after the last one."""
        ...

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Reset, then process `tokens`; return float32 logits [len(tokens), n_vocab] for every position."""
        ...

    def reset(self) -> None:
        """Forget the state."""
        ...

    def save_state(self) -> BackendState:
        """A snapshot of the current state."""
        ...

    def load_state(self, state: BackendState) -> None:
        """Return to a snapshot this backend took."""
        ...

    def close(self) -> None:
        """Release the model's memory."""
        ...


class BackendFactory(Protocol):
    """A backend class: it runs `artifact` of the opened `package` (which it never opens again)."""

    def __call__(self, package: Package, artifact: Artifact, *, n_ctx: int, n_threads: int | None, kv_cache: str,
                 device: str) -> Backend: ...


F = TypeVar("F", bound=Callable[..., Any])


def guarded(method: F) -> F:
    """Run a backend method under the backend's `_lock`, refusing once `_closed`: a model closed while
    another thread generates fails that thread's next call instead of touching freed memory."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._closed:
                raise BackendError("the model has been closed")
            return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]


def checked_tokens(tokens: Sequence[int], *, n_vocab: int, n_past: int = 0, n_ctx: int | None = None) -> list[int]:
    """`tokens` as ints, after checking that each is in the vocabulary (out-of-range ids crash native
    runtimes) and, given `n_ctx`, that they fit in the context after the `n_past` already there."""
    tokens = [int(t) for t in tokens]
    bad = [t for t in tokens if not 0 <= t < n_vocab]
    if bad:
        raise BackendError(f"token id {bad[0]} is outside the vocabulary (0..{n_vocab - 1})")
    if n_ctx is not None and n_past + len(tokens) > n_ctx:
        raise BackendError(f"context full: {n_past} + {len(tokens)} tokens exceed the context size {n_ctx}")
    return tokens
