"""Structured output: constraints are checked when made (one line per problem), and on converted random
models every constrained answer parses and validates, on llama.cpp and ONNX Runtime, with and without a
thought before it."""

from __future__ import annotations

import json
import re

import pytest

import localai
from localai import schemas, structured
from localai.errors import SettingError
from localai.structured import ConstraintError

# enums, nested objects, arrays with bounds, string patterns; every string bounded, so a random model's
# answer ends within the token limit
PET = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z]{1,8}$"},
        "kind": {"enum": ["cat", "dog", "bird"]},
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,5}$"}, "minItems": 1,
                 "maxItems": 3},
        "owner": {"type": "object", "properties": {"first": {"type": "string", "pattern": "^[A-Z][a-z]{0,6}$"},
                                                   "verified": {"type": "boolean"},
                                                   "visits": {"type": "array", "items": {"enum": [1, 2.5, None]},
                                                              "maxItems": 2}},
                  "required": ["first", "verified"], "additionalProperties": False},
    },
    "required": ["name", "kind", "age", "tags", "owner"],
    "additionalProperties": False,
}
SAMPLES = 50


@pytest.fixture
def model(nemotron3_model):
    return nemotron3_model


@pytest.mark.parametrize("think", [False, True])
def test_every_sampled_answer_validates_against_the_schema(model, think):
    constraint = structured.json_schema(PET)
    thoughts = 0
    for seed in range(SAMPLES):
        final = model.chat([{"role": "user", "content": "Describe a pet."}], constraint=constraint, temperature=1.0,
                           seed=seed, think=think, reasoning_budget=12, max_tokens=400)
        assert final.finish_reason == "stop", (seed, final)
        assert schemas.problem(json.loads(final.content), PET) is None, (seed, final.content)
        thoughts += bool(final.reasoning)
    # the thought stays free: the constraint starts where it ends (here cut by the budget)
    assert thoughts == (SAMPLES if think else 0)


def test_json_object_regex_and_grammars(model):
    def answer(constraint, seed):
        return model.chat([{"role": "user", "content": "hi"}], constraint=constraint, temperature=1.0, seed=seed,
                          think=False, max_tokens=200).content

    # any object: a random model writes keys without end, so only the answers that ended are whole
    objects = [model.chat([{"role": "user", "content": "hi"}], constraint=structured.json_object(), temperature=1.0,
                          seed=seed, think=False, max_tokens=200) for seed in range(10)]
    ended = [json.loads(final.content) for final in objects if final.finish_reason == "stop"]
    assert ended and all(isinstance(value, dict) for value in ended)
    assert all(final.content.startswith("{") for final in objects)
    for seed in range(10):
        assert re.fullmatch(r"[0-9]{3}-[A-Z]{2}", answer(structured.regex("^[0-9]{3}-[A-Z]{2}$"), seed))
        lark = 'start: "yes" | "no" | "maybe " NUMBER "%"\nNUMBER: /[1-9][0-9]?/\n'
        assert re.fullmatch(r"yes|no|maybe [1-9][0-9]?%", answer(structured.grammar(lark), seed))
        gbnf = 'root ::= "(" [a-c]{2,4} ")"'
        assert re.fullmatch(r"\([a-c]{2,4}\)", answer(structured.grammar(gbnf, "gbnf"), seed))


def test_a_schema_given_as_a_dict_is_a_constraint(model):
    final = model.chat([{"role": "user", "content": "hi"}], constraint={"type": "object", "properties": {
        "ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}, temperature=0, think=False)
    assert json.loads(final.content) in ({"ok": True}, {"ok": False})


def test_a_plain_completion_is_constrained_too(model):
    final = model.complete("The answer:", constraint=structured.regex("[a-z]{4}"), temperature=1.0, seed=3)
    assert re.fullmatch("[a-z]{4}", final.content) and final.finish_reason == "stop"


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda: structured.json_schema({"type": "array", "uniqueItems": True}), "Unimplemented keys"),
    (lambda: structured.json_schema({"type": "strin"}), "not a valid JSON Schema"),
    (lambda: structured.json_schema({"properties": {"a": {"format": "color"}}}), "Unknown format"),
    (lambda: structured.json_schema({"type": "integer", "minimum": 5, "maximum": 1}), "Unsatisfiable"),
    (lambda: structured.json_schema('{"type": '), "not JSON"),
    (lambda: structured.regex("(?<=a)b"), "look-around"),
    (lambda: structured.grammar('start: "a" missing'), 'unknown name: "missing"'),
    (lambda: structured.grammar("root ::= (", "gbnf"), "GBNF"),
    (lambda: structured.grammar("root ::= [a-", "gbnf"), "GBNF"),
    (lambda: structured.grammar("x" * (structured.MAX_SOURCE_CHARS + 1)), "at most"),
    (lambda: structured.grammar("start: x", "ebnf"), "lark or gbnf"),
])
def test_a_constraint_that_cannot_work_is_one_line(make, fragment):
    with pytest.raises(SettingError) as error:
        make()
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_grammar_that_fails_late_is_an_error_not_a_crash(model):
    """Some grammars pass every check and fail only on their first mask (a regular expression that needs more
    lexer states than the limits allow): a GuideError, one line."""
    bomb = structured.regex("(a{1000}){1000}")
    with pytest.raises(localai.LocalAIError, match="output constraint failed"):
        model.chat([{"role": "user", "content": "hi"}], constraint=bomb, think=False)


def test_regex_anchors_are_optional_and_slashes_are_text():
    assert structured.regex_literal("^a/b$") == "/a\\/b/"
    assert structured.regex_literal("a\\$") == "/a\\$/"
    with pytest.raises(ConstraintError):
        structured.Constraint("yaml", "a: 1")
