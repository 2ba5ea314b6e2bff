"""JSON Schemas from outside: checked once with one line per problem; documents validated with jsonschema,
patterns on a linear-time engine, no $ref fetched."""

from __future__ import annotations

import time

import pytest

from localai import schemas
from localai.errors import SettingError

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^[a-z]+$"},
                                           "age": {"type": "integer", "minimum": 0}},
          "required": ["name"], "additionalProperties": False}


@pytest.mark.parametrize(("schema", "fragment"), [
    ([1, 2], "must be a JSON object"),
    ({"type": "strin"}, "not a valid JSON Schema at $.type"),
    ({"properties": {"a": {"minimum": "zero"}}}, "not a valid JSON Schema at $.properties.a.minimum"),
    ({"properties": {"a": {"pattern": "(?=a)b"}}}, "look-around"),
    ({"properties": {"a": {"pattern": "(a)\\1"}}}, "pattern the regex engine cannot use"),
])
def test_a_bad_schema_is_one_line_naming_the_problem(schema, fragment):
    with pytest.raises(SettingError) as error:
        schemas.check(schema, "the schema")
    message = str(error.value)
    assert fragment in message and "\n" not in message and message.startswith("the schema")


def test_a_schema_nested_too_deep_is_refused_before_it_is_read():
    deep: dict = {"type": "object"}
    for _ in range(schemas.MAX_DEPTH + 5):
        deep = {"type": "object", "properties": {"a": deep}}
    with pytest.raises(SettingError, match="nests more than"):
        schemas.check(deep, "the schema")


def test_problems_name_the_place_and_the_rule():
    assert schemas.problem({"name": "ada", "age": 3}, SCHEMA) is None
    assert schemas.problem({"name": "Ada"}, SCHEMA) == "at $.name: 'Ada' does not match '^[a-z]+$'"
    assert schemas.problem({"age": -1, "name": "a"}, SCHEMA) == "at $.age: -1 is less than the minimum of 0"
    assert "Additional properties" in schemas.problem({"name": "a", "x": 1}, SCHEMA)
    long = schemas.problem({"name": "a" * 100_000}, {"properties": {"name": {"maxLength": 3}}})
    assert len(long) < 300


def test_a_catastrophic_pattern_runs_in_linear_time():
    """(a+)+$ against "aaa...!" takes exponential time in Python's re; Rust's engine answers at once."""
    schema = schemas.check({"properties": {"s": {"type": "string", "pattern": "(a+)+$"}}}, "the schema")
    started = time.perf_counter()
    assert "does not match" in schemas.problem({"s": "a" * 50_000 + "!"}, schema)
    assert schemas.problem({"s": "xa"}, schema) is None  # a match anywhere, as JSON Schema says
    assert time.perf_counter() - started < 5  # bounds a hang, not a speed: Python's re would never finish


def test_a_remote_ref_is_never_fetched():
    schema = {"properties": {"a": {"$ref": "https://example.invalid/schema.json"}}}
    assert "cannot be resolved" in schemas.problem({"a": 1}, schemas.check(schema, "the schema"))
