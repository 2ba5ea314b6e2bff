"""JSON Schemas from outside (a request's response format, a tool's parameters): checked once, and
documents validated against them, with the `jsonschema` library (Draft 2020-12).

A schema is bounded before anything reads it (`MAX_DEPTH` levels of nesting). `$ref`s resolve inside
the schema only: jsonschema retrieves nothing from the network. `pattern` is matched by Rust's regex
engine (through pydantic-core, which FastAPI already brings) instead of Python's `re`: it runs in linear
time, so a pattern such as `(a+)+$` cannot stall a request, and it takes the same syntax as the grammar
engine (no look-around, no back-references).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jsonschema
import pydantic_core
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing.exceptions import Unresolvable

from localai.errors import SettingError
from localai.units import printable, shown

MAX_DEPTH = 48  # nesting of lists and objects in a schema; the grammar engine stops near 61 object levels
MAX_MESSAGE_CHARS = 200  # jsonschema's messages quote the document, which may be long


def check(schema: Any, what: str, *, parse_error: type[SettingError] = SettingError) -> dict[str, Any]:
    """`schema` if it is a JSON Schema object this module and the grammar engine can use, else a
    `parse_error` naming `what` and the problem in one line."""
    if not isinstance(schema, dict):
        raise parse_error(f"{what} must be a JSON object, got {shown(schema)}")
    if _depth(schema) > MAX_DEPTH:
        raise parse_error(f"{what} nests more than {MAX_DEPTH} levels deep")
    try:
        Draft202012Validator.check_schema(schema)
        for pattern in _patterns(schema):
            _pattern_validator(pattern)
    except SchemaError as exc:
        where = f" at {_where(exc.absolute_path)}" if exc.absolute_path else ""
        raise parse_error(f"{what} is not a valid JSON Schema{where}: {_one_line(exc.message)}") from None
    except pydantic_core.SchemaError as exc:
        raise parse_error(f"{what} has a pattern the regex engine cannot use: {_regex_error(exc)}") from None
    return schema


def problem(document: Any, schema: dict[str, Any]) -> str | None:
    """Why `document` does not validate against `schema` (a checked one), in one line; None if it does."""
    try:
        error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(document))
    except Unresolvable as exc:  # a $ref to somewhere outside the schema: never fetched
        return f"the schema's $ref cannot be resolved: {_one_line(str(exc))}"
    return None if error is None else f"at {_where(error.absolute_path)}: {_one_line(error.message)}"


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    return _Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _rust_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    """The `pattern` keyword on Rust's regex engine (JSON Schema's semantics: a match anywhere)."""
    if not isinstance(instance, str):
        return
    try:
        _pattern_validator(pattern).validate_python(instance)
    except pydantic_core.ValidationError:
        yield ValidationError(f"{shown(instance)} does not match {shown(pattern)}")


_Validator = jsonschema.validators.extend(Draft202012Validator, {"pattern": _rust_pattern})


@functools.lru_cache(maxsize=256)
def _pattern_validator(pattern: str) -> pydantic_core.SchemaValidator:
    return pydantic_core.SchemaValidator(
        pydantic_core.core_schema.str_schema(pattern=pattern, regex_engine="rust-regex"))


def _patterns(schema: Any) -> Iterator[str]:
    """Every string under a `pattern` key (a property named "pattern" is checked too: harmless)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _patterns(item)


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH or not isinstance(value, dict | list):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((_depth(item, level + 1) for item in items), default=level + 1)


def _where(parts: Any) -> str:
    """A location in a document as a JSONPath: $, $.a, $.a[0]."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _one_line(text: str) -> str:
    """The first line of a library's message, printable and cut short."""
    line = next((line.strip() for line in text.strip().splitlines() if line.strip()), "invalid")
    return printable(line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 1] + "…")


def _regex_error(exc: Exception) -> str:
    """Rust regex's reason ("look-around ... is not supported") from pydantic-core's multi-line message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line[len("error:") :].strip() for line in lines if line.startswith("error:")), _one_line(str(exc)))
