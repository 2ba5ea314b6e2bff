"""Structured output: what an answer must match (a JSON schema, any JSON object, a regular expression, or
a grammar in Lark or GBNF), as one llguidance grammar.

The grammar engine is llguidance (MIT; the comparison with xgrammar and outlines-core is in
docs/tools.md). A `Constraint` is checked when it is made, without a model: its text is bounded, a
schema must be valid JSON Schema, and llguidance must accept the grammar under `LIMITS`, so a bad
schema or an unsupported feature is one line naming the problem before anything is loaded. Keywords
the engine cannot enforce (`uniqueItems`, `not`, ...) are refused rather than ignored: an answer the
constraint allows must always validate.

JSON comes out in one fixed layout, `{"a": 1, "b": [1, 2]}` (separators ", " and ": ", properties in
the schema's order), after at most `LEAD_MAX` whitespace characters (a thinking model writes a blank
line after its thought). Regular expressions and grammars are taken as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from localai import schemas
from localai.errors import SettingError
from localai.guide import grammar_problem
from localai.units import shown

MAX_SOURCE_CHARS = 128 * 1024  # a schema or grammar of a request; real ones are a few kB
LEAD_MAX = 8  # whitespace characters allowed before a JSON answer
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
Kind = Literal["json_schema", "json_object", "regex", "lark", "gbnf"]
KINDS: tuple[Kind, ...] = ("json_schema", "json_object", "regex", "lark", "gbnf")
NAMES = {"json_schema": "JSON schema", "json_object": "JSON object", "regex": "regular expression",
         "lark": "Lark grammar", "gbnf": "GBNF grammar"}


class ConstraintError(SettingError):
    """A schema, regular expression or grammar that cannot constrain an answer."""


@dataclass(frozen=True)
class Constraint:
    """What an answer must match. `text`: the schema as JSON text, the regular expression, or the grammar.
    Make one with `json_schema`, `json_object`, `regex` or `grammar`; each checks it."""

    kind: Kind
    text: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConstraintError(f"constraint kind must be one of {', '.join(KINDS)}, got {shown(self.kind)}")
        if not isinstance(self.text, str) or len(self.text) > MAX_SOURCE_CHARS:
            raise ConstraintError(f"a {NAMES[self.kind]} must be text of at most {MAX_SOURCE_CHARS} characters")
        if self.kind == "json_schema":
            try:
                schema = json.loads(self.text)
            except ValueError as exc:
                raise ConstraintError(f"the JSON schema is not JSON: {exc}") from None
            schemas.check(schema, "the JSON schema", parse_error=ConstraintError)
        problem = grammar_problem(self.grammar())
        if problem:
            raise ConstraintError(f"the {NAMES[self.kind]} cannot constrain an answer: {problem}")

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema an answer validates against (json_schema and json_object), else None."""
        if self.kind == "json_object":
            return {"type": "object"}
        return json.loads(self.text) if self.kind == "json_schema" else None

    @property
    def is_json(self) -> bool:
        return self.kind in ("json_schema", "json_object")

    def answer_rule(self) -> str:
        """Rules defining `answer` for a JSON constraint (to combine with tool calls)."""
        return json_rule("answer", self.schema or {})

    def grammar(self) -> str:
        """The whole llguidance grammar (Lark, rule `start`)."""
        if self.is_json:
            return f"start: LEAD? answer\n{self.answer_rule()}{LEAD}"
        if self.kind == "regex":
            return f"start: ANSWER\nANSWER: {regex_literal(self.text)}\n"
        if self.kind == "gbnf":
            return _gbnf_as_lark(self.text)
        return self.text


def json_schema(schema: dict[str, Any] | str) -> Constraint:
    """Answers that are JSON documents valid against `schema` (a dict or its JSON text)."""
    if isinstance(schema, str):
        return Constraint("json_schema", schema)
    try:
        text = json.dumps(schema, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:  # not JSON: sets, NaN, objects
        raise ConstraintError(f"the JSON schema is not JSON: {exc}") from None
    return Constraint("json_schema", text)


def json_object() -> Constraint:
    """Answers that are one JSON object (OpenAI's `json_object` mode, Ollama's `format: "json"`)."""
    return Constraint("json_object")


def regex(pattern: str) -> Constraint:
    """Answers that match `pattern` whole (Rust regex syntax: no look-around, no back-references; a leading
    ^ and a trailing $ are allowed and change nothing)."""
    return Constraint("regex", pattern)


def grammar(text: str, syntax: Literal["lark", "gbnf"] = "lark") -> Constraint:
    """Answers in the language of a grammar: llguidance's Lark dialect (rule `start`) or llama.cpp's GBNF
    (rule `root`)."""
    if syntax not in ("lark", "gbnf"):
        raise ConstraintError(f"grammar syntax must be lark or gbnf, got {shown(syntax)}")
    return Constraint(syntax, text)


# --- grammar text shared with the tool-call formats ------------------------------------------------

LEAD = f"LEAD: /[ \\t\\r\\n]{{1,{LEAD_MAX}}}/\n"  # whitespace a model may write before its answer


def json_rule(name: str, schema: dict[str, Any], *, lenient: bool = False) -> str:
    """A Lark rule `name` matching JSON documents valid against `schema`, in the fixed layout. `lenient`:
    keywords the engine cannot enforce are left to validation afterwards instead of refused."""
    options = {**JSON_LAYOUT, "lenient": True} if lenient else JSON_LAYOUT
    return f"{name}: %json {json.dumps({**schema, 'x-guidance': options}, ensure_ascii=False)}\n"


def regex_literal(pattern: str) -> str:
    """`pattern` as a Lark regular-expression literal (slashes escaped; one leading ^ and trailing $
    dropped: the whole answer must match anyway)."""
    if pattern.startswith("^"):
        pattern = pattern[1:]
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1]
    return "/" + pattern.replace("\\/", "/").replace("/", "\\/") + "/"


def _gbnf_as_lark(text: str) -> str:
    from llguidance.gbnf_to_lark import gbnf_to_lark

    try:
        return gbnf_to_lark(text)
    except Exception as exc:  # a grammar from outside: any failure of the converter is its error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConstraintError(f"the GBNF grammar cannot constrain an answer: {first}") from None
