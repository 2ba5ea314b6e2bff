"""Benchmark: the demo model's sums as constrained JSON, `{"sum": integer}`, next to its free answers.

    .venv/bin/python benchmarks/demo_structured.py PACKAGE [PACKAGE ...] [--n 100]

Held-out problems (`arithmetic.problems`), greedy, thinking on, through the chat engine. For each package:
the free answer to the question (right if its first number is the sum), and the answer constrained to
the schema `{"sum": integer}` to the question with " Reply in JSON." appended (as the model learned to
answer JSON in its second training stage) and to the bare question (the constraint alone): how many are
valid JSON for the schema, and how many hold the right sum.
"""

from __future__ import annotations

import argparse
import json
import platform

import localai
from localai import schemas, structured
from localai.tasks import arithmetic

SCHEMA = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"],
          "additionalProperties": False}
JSON_REQUEST = " Reply in JSON."


def constrained(model: localai.Model, question: str, problem: arithmetic.Problem) -> tuple[bool, bool]:
    """(valid for the schema, right sum) of the constrained answer to `question`."""
    final = model.chat([{"role": "user", "content": question}], temperature=0, think=True, max_tokens=400,
                       constraint=structured.json_schema(SCHEMA))
    try:
        answer = json.loads(final.content)
    except ValueError:
        return False, False
    valid = schemas.problem(answer, SCHEMA) is None
    return valid, valid and answer["sum"] == problem.a + problem.b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}; {args.n} held-out problems, greedy, thinking on")
    print("| package | free answer right | constrained, asked for JSON: valid / right | constrained, bare question: "
          "valid / right |")
    print("|---|---|---|---|")
    for package in args.packages:
        model = localai.load(package)
        free = asked_valid = asked_right = bare_valid = bare_right = 0
        for problem in arithmetic.problems(args.n):
            answer = model.chat([{"role": "user", "content": problem.question}], temperature=0, think=True,
                                max_tokens=400)
            free += arithmetic.is_correct(answer.content, problem)
            valid, right = constrained(model, problem.question + JSON_REQUEST, problem)
            asked_valid, asked_right = asked_valid + valid, asked_right + right
            valid, right = constrained(model, problem.question, problem)
            bare_valid, bare_right = bare_valid + valid, bare_right + right
        print(f"| {model.manifest.name} | {free} | {asked_valid} / {asked_right} | {bare_valid} / {bare_right} |")
        model.close()


if __name__ == "__main__":
    main()
