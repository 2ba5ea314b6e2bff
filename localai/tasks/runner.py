"""Run a task's problems through the chat engine and score them, for one setting or a budget sweep."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from localai.conversation import Conversation
from localai.errors import LocalAIError
from localai.events import collect
from localai.model import Model
from localai.options import ChatOptions


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


def greedy(model: Model, **changes: Any) -> ChatOptions:
    """`model`'s defaults sampled greedily, with `changes`: how problems are scored, so that a score repeats."""
    return model.defaults.changed(temperature=0.0, **changes)


def score(model: Model, task: ModuleType, problems: list[Any], options: ChatOptions, *,
          on_problem: Callable[[], None] = lambda: None) -> TaskScore:
    """Ask `model` every problem with `options` and count correct answers."""
    correct = reasoning = completion = 0
    latency = 0.0
    for problem in problems:
        started = time.perf_counter()
        final = model.chat([{"role": "user", "content": problem.question}], options)
        latency += time.perf_counter() - started
        correct += task.is_correct(final.content, problem)
        reasoning += final.usage.reasoning_tokens
        completion += final.usage.completion_tokens
        on_problem()
    n = len(problems)
    return TaskScore(n, correct, reasoning / n, completion / n, latency / n * 1000)


def score_conversations(model: Model, task: ModuleType, conversations: list[list[Any]], options: ChatOptions,
                        ) -> list[TaskScore]:
    """Ask each conversation's problems one after another in one chat (the model's own earlier answers
    stay in the history, as in `localai chat`) and score each position: element i is question i + 1."""
    turns = len(conversations[0])
    correct, reasoning, completion, latency = [0] * turns, [0] * turns, [0] * turns, [0.0] * turns
    for problems in conversations:
        chat = Conversation(model, options)
        for i, problem in enumerate(problems):
            started = time.perf_counter()
            final = collect(chat.send(problem.question))
            latency[i] += time.perf_counter() - started
            correct[i] += task.is_correct(final.content, problem)
            reasoning[i] += final.usage.reasoning_tokens
            completion[i] += final.usage.completion_tokens
    n = len(conversations)
    return [TaskScore(n, correct[i], reasoning[i] / n, completion[i] / n, latency[i] / n * 1000) for i in range(turns)]


def parse_budgets(text: str) -> list[int | None]:
    """"0,16,64,unlimited" -> [0, 16, 64, None]: token counts, with "unlimited" for no cap."""
    budgets: list[int | None] = []
    for item in (part.strip() for part in text.split(",")):
        if item.lower() in ("unlimited", "none", "inf"):
            budgets.append(None)
            continue
        try:
            value = int(item)
        except ValueError:
            raise LocalAIError(f"budget {item!r} is neither a token count nor 'unlimited'") from None
        if value < 0:
            raise LocalAIError(f"budget {value} is negative")
        budgets.append(value)
    if len(set(budgets)) != len(budgets):
        raise LocalAIError(f"budgets repeat: {text}")
    return budgets


@dataclass(frozen=True)
class SweepRow:
    """One reasoning budget (None: unlimited; 0: thinking off) and its score."""

    budget: int | None
    score: TaskScore

    def to_dict(self) -> dict[str, Any]:
        return {"budget": "unlimited" if self.budget is None else self.budget, "accuracy": self.score.accuracy,
                **asdict(self.score)}


def sweep(model: Model, task: ModuleType, problems: list[Any], budgets: Sequence[int | None], options: ChatOptions,
          *, on_problem: Callable[[], None] = lambda: None) -> list[SweepRow]:
    """Score `problems` once per reasoning budget with `options`, thinking on (budget 0 turns it off)."""
    if model.format.thinking is None:
        raise LocalAIError(f"{model.manifest.name} has no reasoning markers: a reasoning-budget sweep needs a "
                           "model that thinks")
    return [SweepRow(budget, score(model, task, problems, options.changed(think=True, reasoning_budget=budget),
                                   on_problem=on_problem))
            for budget in budgets]
