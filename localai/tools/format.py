"""The tool-call format seam: what one model family's way of writing calls must provide (`ToolFormat`),
and what the formats share (`Markup`: how a grammar writes a tag; the JSON schema of a call object).

A format reads calls out of the model's text (`parse`) and writes the grammar that makes the model write
them correctly (`calls_rule`, and `body_rule` for a call the model opens by itself in "auto" mode). How
tools and tool results reach the model is the chat template's job, never the format's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from localai.tools.spec import Tool, Written

Markup = Callable[[str], str]  # a tag's text -> how a Lark grammar writes it (a control token's id, or text)
MAX_CALLS = 8  # calls in one forced answer with parallel calls allowed: a grammar must end somewhere


class ToolFormat(Protocol):
    """One family's tool-call format. `opening`/`closing`: the text around a block of calls ("" for
    `opening`: the answer itself is the block when it starts with one of `starts`, Llama 3's way)."""

    name: str
    opening: str
    closing: str
    starts: tuple[str, ...]

    def detects(self, template: str) -> bool:
        """Whether a chat template renders tools and calls in this format."""
        ...

    def parse(self, block: str, tools: Sequence[Tool]) -> list[Written]:
        """The calls in `block`, the text between `opening` and `closing` (markup excluded)."""
        ...

    def calls_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> str:
        """Lark rules defining `calls`: 1 to `most` calls to `tools`, markup included, each with arguments
        valid for its tool."""
        ...

    def body_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> str | None:
        """Lark rules defining `body`: what follows `opening` up to and including `closing` (at most `most`
        calls where one block holds several); None if the format has no opening to wait for."""
        ...


class JsonInTags:
    """What the formats whose calls are JSON between two tags share (Hermes, Nemotron Nano 2): found by the
    opening tag in the template; a block holds one call object or a list of them."""

    opening: str
    starts: tuple[str, ...] = ()

    def detects(self, template: str) -> bool:
        return self.opening in template

    def parse(self, block: str, tools: Sequence[Tool]) -> list[Written]:
        return json_calls(block, "arguments")


def call_object_schema(tools: Sequence[Tool], arguments_key: str) -> dict[str, Any]:
    """The JSON schema of `{"name": NAME, ARGUMENTS_KEY: {...}}` for any of `tools`, each with its own
    parameters. A call writes only the parameters a tool declares unless its schema says otherwise (a
    schema that is silent allows any others, which a grammar would let a model invent)."""
    variants = [{"type": "object", "properties": {"name": {"const": tool.name}, arguments_key: declared(tool)},
                 "required": ["name", arguments_key], "additionalProperties": False} for tool in tools]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def declared(tool: Tool) -> dict[str, Any]:
    """The tool's parameters, with no others allowed unless the schema says so."""
    return {"additionalProperties": False, **tool.parameters}


def more(separator: str, rule: str, most: int) -> str:
    """Lark for up to `most` - 1 more of `rule` after the first, each after `separator`."""
    return f" ({literal(separator)} {rule}){{0,{most - 1}}}" if most > 1 else ""


def literal(text: str) -> str:
    """`text` as a Lark string literal."""
    return json.dumps(text, ensure_ascii=False)


def json_calls(block: str, arguments_key: str) -> list[Written]:
    """The calls in a block of JSON: one call object, or a list of them."""
    value, problem = json_object(block)
    if problem:
        return [Written("", problem=problem)]
    calls = value if isinstance(value, list) else [value]
    return [written_call(call, arguments_key) for call in calls] or [Written("", problem="an empty list of calls")]


def written_call(value: object, arguments_key: str) -> Written:
    """A call object `{"name": ..., ARGUMENTS_KEY: {...}}` as written (arguments may also be a JSON string,
    as some models write them)."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return Written("", problem='a call must be a JSON object with a "name"')
    arguments = value.get(arguments_key, value.get("arguments", {}))
    if isinstance(arguments, str):
        arguments, problem = json_object(arguments)
        if problem:
            return Written(value["name"], problem=f"the arguments are {problem}")
    return Written(value["name"], arguments)


def json_object(text: str) -> tuple[Any, str | None]:
    """`text` read as JSON (surrounding whitespace allowed): the value and None, or None and the reason."""
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"not JSON: {exc}"
