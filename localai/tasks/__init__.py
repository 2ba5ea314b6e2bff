"""Evaluation tasks with known answers, by name. A new task is a module with `problems(n, seed)` and
`is_correct(answer_text, problem)`, plus a line in TASKS."""

from __future__ import annotations

import importlib
from types import ModuleType

from localai.errors import LocalAIError

TASKS: dict[str, str] = {
    "arithmetic": "localai.tasks.arithmetic",
}


def task(name: str) -> ModuleType:
    try:
        return importlib.import_module(TASKS[name])
    except KeyError:
        raise LocalAIError(f"unknown task {name!r} (available: {', '.join(TASKS)})") from None
