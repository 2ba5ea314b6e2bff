from __future__ import annotations

import pytest

from localai.errors import LocalAIError
from localai.tasks import arithmetic, task


def test_trace_reaches_the_sum_column_by_column():
    problem = arithmetic.Problem(48213, 9876)
    assert problem.thought.splitlines() == [
        "48213+9876: 3+6+0=9 so 9", "4821+987: 1+7+0=8 so 89", "482+98: 2+8+0=10 so 089",
        "48+9: 8+9+1=18 so 8089", "4+0: 4+0+1=5 so 58089"]
    assert arithmetic.Problem(999, 1).thought.splitlines()[-1] == "9+0: 9+0+1=10 so 1000"
    for p in arithmetic.problems(500, seed=7):
        assert p.thought.splitlines()[-1].endswith(f" so {p.answer}")
        assert arithmetic.MIN_DIGITS <= len(str(p.a)) <= arithmetic.MAX_DIGITS


def test_held_out_problems_are_fixed_and_scoring_reads_the_first_number():
    assert arithmetic.problems(5) == arithmetic.problems(5)
    assert arithmetic.problems(5) != arithmetic.problems(5, seed=1)
    p = arithmetic.Problem(2, 40)
    assert arithmetic.is_correct("42", p) and arithmetic.is_correct("It is 42.", p)
    assert not arithmetic.is_correct("41 or 42", p) and not arithmetic.is_correct("", p)


def test_held_out_conversations_are_fixed_and_cover_one_to_six_digits():
    chats = arithmetic.conversations(50)
    assert chats == arithmetic.conversations(50) and all(len(chat) == 4 for chat in chats)
    assert not {p for chat in chats for p in chat} & set(arithmetic.problems(200))
    digits = {len(str(n)) for p in arithmetic.problems(500, seed=7) for n in (p.a, p.b)}
    assert digits == set(range(1, 7))


def test_registry():
    assert task("arithmetic") is arithmetic
    with pytest.raises(LocalAIError, match="available: arithmetic"):
        task("chess")
