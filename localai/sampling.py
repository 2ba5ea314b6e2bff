"""Next-token sampling in numpy, identical on every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REPETITION_WINDOW = 64  # recent tokens the repetition penalty looks at (llama.cpp's default)


@dataclass(frozen=True)
class SamplingParams:
    """temperature 0 means greedy; top_k 0, top_p 1, min_p 0 and repetition_penalty 1 disable those."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


class Sampler:
    """Picks a token from logits; seeded, so a run with the same seed repeats exactly."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self._rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, recent: Sequence[int] = ()) -> int:
        p = self.params
        scores = logits.astype(np.float64)
        if p.repetition_penalty != 1.0 and recent:
            seen = np.unique(np.asarray(recent[-REPETITION_WINDOW:], dtype=np.int64))
            # as in llama.cpp and transformers: shrink positive logits, push negative ones further down
            scores[seen] = np.where(scores[seen] > 0, scores[seen] / p.repetition_penalty,
                                    scores[seen] * p.repetition_penalty)
        if p.temperature == 0:
            return int(np.argmax(scores))
        scores /= p.temperature
        if 0 < p.top_k < scores.size:
            cutoff = np.partition(scores, -p.top_k)[-p.top_k]
            scores[scores < cutoff] = -np.inf
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        if p.min_p > 0:
            probs[probs < p.min_p * probs.max()] = 0.0
            probs /= probs.sum()
        if p.top_p < 1:
            order = np.argsort(-probs)
            cumulative = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cumulative, p.top_p)) + 1]
            nucleus = np.zeros_like(probs)
            nucleus[keep] = probs[keep]
            probs = nucleus / nucleus.sum()
        return int(self._rng.choice(probs.size, p=probs))
