"""What the backends running a decoder graph with explicit state tensors share (ONNX Runtime, TensorRT):
tokenization by the package's tokenizer.json, and the protocol's eval / logits / reset in batches of
`_n_batch` tokens, on top of two methods each runtime writes: `_step` (one batch on the current state)
and `_reset_states`."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from localai.backends.base import checked_tokens, guarded
from localai.backends.hf_tokenizer import PackageTokenizer
from localai.errors import BackendError

# the length of a K/V state that is one buffer for past and present (the ort flavour's fused attention):
# the runtime allocates the context's size and binds `past_length`, the tokens in it
KV_CAPACITY = "kv_capacity"


class GraphBackend:
    """Base of a graph backend; the subclass sets the attributes below and calls `_reset_states()` when
    loaded."""

    _tokenizer: PackageTokenizer
    _n_past = 0
    _n_batch: int  # most tokens per `_step`
    n_vocab: int
    n_ctx: int

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False

    @staticmethod
    def _check_options(n_ctx: int, kv_cache: str, kind: str) -> None:
        """The checks of the arguments every graph backend (ONNX, TensorRT) makes: its states stay in the
        graph's own types."""
        if n_ctx <= 0:
            raise BackendError(f"context size must be positive, got {n_ctx}")
        if kv_cache != "f32":
            raise BackendError(f"the {kind} graph keeps its states in its own types (asked for {kv_cache!r})")

    @property
    def n_past(self) -> int:
        return self._n_past

    @guarded
    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self._tokenizer.tokenize(text, add_bos=add_bos, special=special)

    @guarded
    def token_bytes(self, token: int) -> bytes:
        return self._tokenizer.token_bytes(token)

    @guarded
    def is_end_of_generation(self, token: int) -> bool:
        return self._tokenizer.is_end_of_generation(token)

    @guarded
    def control_tokens(self) -> frozenset[int]:
        return self._tokenizer.control_tokens

    @guarded
    def eval(self, tokens: Sequence[int]) -> np.ndarray:
        if not tokens:
            raise BackendError("eval() needs at least one token")
        return self._run(tokens, all_logits=False)[-1]

    @guarded
    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        self._reset_states()
        return self._run(tokens, all_logits=True)

    @guarded
    def reset(self) -> None:
        self._reset_states()

    def _run(self, tokens: Sequence[int], *, all_logits: bool) -> np.ndarray:
        """Append `tokens` to the state: logits [len(tokens), n_vocab] if `all_logits`, else [n_vocab]. A
        failure keeps the batches before it (n_past says how far it got); the chat engine starts every
        request from a reset or a snapshot, so it never continues from such a state."""
        tokens = checked_tokens(tokens, n_vocab=self.n_vocab, n_past=self._n_past, n_ctx=self.n_ctx)
        rows = []
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            rows.append(self._step(chunk, keep=len(chunk) if all_logits else 1))
        return np.concatenate(rows) if all_logits else rows[-1]

    def _step(self, chunk: list[int], *, keep: int) -> np.ndarray:
        """Append `chunk` (at most `_n_batch` tokens) to the state; the logits [keep, n_vocab] of its last
        `keep` tokens."""
        raise NotImplementedError

    def _reset_states(self) -> None:
        """Return to the empty state (n_past 0)."""
        raise NotImplementedError
