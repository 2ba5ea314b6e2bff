"""The demo model's scores table in docs/demo.md: first questions and follow-up questions, per package.

    .venv/bin/python benchmarks/demo_scores.py PACKAGE [...] [--n 200] [--conversations 100] [--threads 2]

For every package: held-out single questions (`arithmetic.problems(n)`) with thinking on and off, and
held-out conversations of four questions (`arithmetic.conversations(c)`) asked one after another in one
chat, the model's own answers kept in the history, with the accuracy over questions 2 to 4 (thinking on
and off). Greedy, through the chat engine, as `localai eval --task arithmetic` asks.
"""

from __future__ import annotations

import argparse

import localai
from localai.tasks import arithmetic
from localai.tasks.runner import TaskScore, greedy, score, score_conversations

MAX_TOKENS = 400


def later(scores: list[TaskScore]) -> str:
    """Accuracy over questions 2 to 4, then each position's."""
    right, asked = sum(s.correct for s in scores[1:]), sum(s.problems for s in scores[1:])
    each = " / ".join(f"{s.accuracy:.0%}" for s in scores[1:])
    return f"{right / asked:.1%} ({each})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--n", type=int, default=200, help="single held-out questions")
    parser.add_argument("--conversations", type=int, default=100, help="held-out chats of four questions")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    problems, chats = arithmetic.problems(args.n), arithmetic.conversations(args.conversations)
    print(f"| package | first question, thinking on ({args.n}) | thinking off ({args.n}) | questions 2-4, "
          f"thinking on ({3 * args.conversations}: 2nd / 3rd / 4th) | questions 2-4, thinking off |")
    print("|---|---|---|---|---|")
    for name in args.packages:
        model = localai.load(name, n_threads=args.threads)
        try:
            on = score(model, arithmetic, problems, greedy(model, think=True, max_tokens=MAX_TOKENS))
            off = score(model, arithmetic, problems, greedy(model, think=False, max_tokens=MAX_TOKENS))
            chat_on = score_conversations(model, arithmetic, chats, greedy(model, think=True, max_tokens=MAX_TOKENS))
            chat_off = score_conversations(model, arithmetic, chats, greedy(model, think=False, max_tokens=MAX_TOKENS))
        finally:
            model.close()
        print(f"| {model.manifest.name} | {on.accuracy:.1%} | {off.accuracy:.1%} | {later(chat_on)} | "
              f"{later(chat_off)} |", flush=True)


if __name__ == "__main__":
    main()
