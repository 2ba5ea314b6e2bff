"""Reusing a conversation's state across turns.

Every chat request sends the whole conversation. Runtimes hide that with a prefix KV cache, which a
hybrid model cannot use: a Mamba2 state cannot be trimmed back to a shorter prefix, and the template
drops earlier reasoning, so last turn's context is never a prefix of this turn's prompt. Instead the
engine snapshots the backend state at each turn boundary: after the conversation as the template
renders it in history (everything before the generation prompt). The next request whose tokens start
with a snapshot's tokens restores it and processes only the rest; regenerating an answer or editing
the last message finds the snapshot of the turn before. The result is exactly what processing the
whole prompt gives, since the tokens are compared, not the texts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from localai.backends.base import Backend, BackendState

log = logging.getLogger(__name__)
DEFAULT_SNAPSHOTS = 2  # this turn's boundary, and the previous one for regenerate / edit


@dataclass
class TurnStates:
    """The most recent turn-boundary snapshots of one loaded model (at most `capacity`; 0 disables)."""

    capacity: int = DEFAULT_SNAPSHOTS
    _entries: list[tuple[tuple[int, ...], BackendState]] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(state.nbytes for _, state in self._entries)

    def best_prefix(self, tokens: Sequence[int]) -> tuple[int, BackendState] | None:
        """The snapshot holding the longest proper prefix of `tokens` (at least one token must remain to
        be processed, for the logits), as (its length, state)."""
        best: tuple[int, BackendState] | None = None
        for held, state in self._entries:
            if len(held) < len(tokens) and tuple(tokens[: len(held)]) == held and (best is None or len(held) > best[0]):
                best = (len(held), state)
        return best

    def add(self, tokens: Sequence[int], state: BackendState) -> None:
        key = tuple(tokens)
        self._entries = [(k, s) for k, s in self._entries if k != key]
        self._entries.append((key, state))
        del self._entries[: max(0, len(self._entries) - self.capacity)]  # oldest first

    def clear(self) -> None:
        self._entries.clear()


def prefill(backend: Backend, prompt: Sequence[int], states: TurnStates | None, boundary: int | None) -> tuple[
        np.ndarray, int]:
    """Bring `backend` to the state after `prompt` and return (the next-token logits, tokens reused).

    Starts from the best snapshot in `states` (None: no reuse), or from scratch; takes a new snapshot
    after the first `boundary` tokens (the conversation before this turn's generation prompt)."""
    hit = states.best_prefix(prompt) if states is not None else None
    if hit is None:
        if states is not None and states.nbytes:
            log.debug("turn state: no snapshot is a prefix of the %d-token prompt; processing it all", len(prompt))
        backend.reset()
        reused = 0
    else:
        reused, state = hit
        backend.load_state(state)
    if states is not None and boundary is not None and reused < boundary < len(prompt):
        backend.eval(prompt[reused:boundary])
        states.add(prompt[:boundary], backend.save_state())
        return backend.eval(prompt[boundary:]), reused
    return backend.eval(prompt[reused:]), reused
