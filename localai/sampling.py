"""Next-token sampling in numpy, identical on every backend."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from localai.errors import SettingError
from localai.units import shown

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
        # written so that NaN fails every rule: settings come from command lines and manifests
        _require("temperature", self.temperature, lambda t: 0 <= t < math.inf, ">= 0")
        _require("top_p", self.top_p, lambda p: 0 < p <= 1, "in (0, 1]")
        _require("top_k", self.top_k, lambda k: isinstance(k, int) and k >= 0, "a whole number >= 0")
        _require("min_p", self.min_p, lambda p: 0 <= p < 1, "in [0, 1)")
        _require("repetition_penalty", self.repetition_penalty, lambda r: 0 < r < math.inf, "> 0")
        if self.seed is not None:
            _require("seed", self.seed, lambda s: isinstance(s, int) and 0 <= s < 2**64,
                     "a whole number from 0 to 2^64 - 1")


def _require(name: str, value: object, rule: Callable[[Any], bool], wanted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not rule(value):
        raise SettingError(f"{name} must be {wanted}, got {shown(value)}")


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
