"""Run a task's problems through the chat engine and score them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from localai.chat import collect
from localai.model import Model


@dataclass(frozen=True)
class TaskScore:
    """Accuracy and cost of one setting (thinking on/off, budget) over a set of problems."""

    problems: int
    correct: int
    mean_reasoning_tokens: float
    mean_completion_tokens: float
    mean_latency_ms: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.problems if self.problems else 0.0


def score(model: Model, task: ModuleType, problems: list[Any], **settings: Any) -> TaskScore:
    """Ask `model` every problem (greedy unless `settings` say otherwise) and count correct answers."""
    settings = {"temperature": 0.0, **settings}
    correct = reasoning = completion = 0
    latency = 0.0
    for problem in problems:
        started = time.perf_counter()
        final = collect(model.chat([{"role": "user", "content": problem.question}], **settings))
        latency += time.perf_counter() - started
        correct += task.is_correct(final.content, problem)
        reasoning += final.usage.reasoning_tokens
        completion += final.usage.completion_tokens
    n = len(problems)
    return TaskScore(n, correct, reasoning / n, completion / n, latency / n * 1000)
