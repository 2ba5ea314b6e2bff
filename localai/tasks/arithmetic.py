"""Multi-digit addition with a digit-by-digit trace: the demo model's task.

Thinking pays here: the trace adds one column at a time from the right, carrying as a person does.
Each line restates what is left of both numbers, so the digits to add are always the ones just before
"+" and ":" (every step is local: a small model without positional embeddings learns it quickly), and
repeats the digits of the sum found so far, so the answer is read off the last line. Without the trace
the model has to produce every digit of the sum at once, which a small model does much less reliably.

    user:       What is 48213 + 9876?
    reasoning:  48213+9876: 3+6+0=9 so 9
                4821+987: 1+7+0=8 so 89
                482+98: 2+8+0=10 so 089
                48+9: 8+9+1=18 so 8089
                4+0: 4+0+1=5 so 58089
    answer:     58089
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

MIN_DIGITS, MAX_DIGITS = 1, 6
EVAL_SEED = 1_000_003  # held-out problems come from here; training uses other seeds
CONVERSATION_SEED = 1_000_033  # held-out conversations come from here


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    @property
    def question(self) -> str:
        return f"What is {self.a} + {self.b}?"

    @property
    def answer(self) -> str:
        return str(self.a + self.b)

    @property
    def thought(self) -> str:
        """The column-by-column trace, one line per column, right to left."""
        a, b = str(self.a), str(self.b)
        carry, digits, lines = 0, "", []
        while a or b:
            x, y = int(a[-1]) if a else 0, int(b[-1]) if b else 0
            total = x + y + carry
            digits = str(total % 10) + digits
            final_carry = str(total // 10) if len(a) <= 1 and len(b) <= 1 and total >= 10 else ""
            lines.append(f"{a or 0}+{b or 0}: {x}+{y}+{carry}={total} so {final_carry}{digits}")
            carry, a, b = total // 10, a[:-1], b[:-1]
        return "\n".join(lines)


def random_problem(rng: random.Random) -> Problem:
    def number() -> int:
        digits = rng.randint(MIN_DIGITS, MAX_DIGITS)
        return rng.randint(10 ** (digits - 1), 10**digits - 1)

    return Problem(number(), number())


def problems(n: int, seed: int = EVAL_SEED) -> list[Problem]:
    """`n` problems; the default seed gives the held-out set."""
    rng = random.Random(seed)
    return [random_problem(rng) for _ in range(n)]


def conversations(n: int, turns: int = 4, seed: int = CONVERSATION_SEED) -> list[list[Problem]]:
    """`n` conversations of `turns` questions each, asked one after another in one chat; the default seed
    gives the held-out set."""
    rng = random.Random(seed)
    return [[random_problem(rng) for _ in range(turns)] for _ in range(n)]


def is_correct(answer_text: str, problem: Problem) -> bool:
    """The answer is right if the first number in it is the sum."""
    match = re.search(r"\d+", answer_text)
    return bool(match) and match.group() == problem.answer
