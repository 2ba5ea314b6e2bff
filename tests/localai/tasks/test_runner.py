"""localai.tasks.runner: budget lists and the sweep on the trained demo model."""

from __future__ import annotations

import dataclasses

import pytest

import localai
from localai.errors import LocalAIError
from localai.tasks import arithmetic
from localai.tasks.runner import greedy, parse_budgets, sweep


def test_parse_budgets():
    assert parse_budgets("0, 16,64,unlimited") == [0, 16, 64, None]
    for bad, message in (("16,x", "neither"), ("-1", "negative"), ("8,8", "repeat")):
        with pytest.raises(LocalAIError, match=message):
            parse_budgets(bad)


def test_sweep_gives_one_row_per_budget_and_thinking_pays(demo_package):
    model = localai.load(demo_package("gguf", "q8_0"))
    rows = sweep(model, arithmetic, arithmetic.problems(6), [0, 32, None], greedy(model, max_tokens=400))
    model.close()
    assert [r.budget for r in rows] == [0, 32, None]
    off, capped, free = (r.score for r in rows)
    assert off.mean_reasoning_tokens == 0
    assert 0 < capped.mean_reasoning_tokens <= 32 + 8  # budget + default grace
    assert free.mean_reasoning_tokens > capped.mean_reasoning_tokens
    assert free.accuracy >= 5 / 6 and free.accuracy > off.accuracy
    assert all(r.score.problems == 6 and r.score.mean_latency_ms > 0 for r in rows)


def test_a_sweep_needs_a_reasoning_model(package):
    model = localai.load(package("llama", "f16"))
    model.format = dataclasses.replace(model.format, thinking=None)
    with pytest.raises(LocalAIError, match="no reasoning markers"):
        sweep(model, arithmetic, arithmetic.problems(1), [0], model.defaults)
    model.close()
