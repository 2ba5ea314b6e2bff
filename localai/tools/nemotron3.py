"""NVIDIA Nemotron 3's tool calls (Qwen3-Coder's too): XML-like markup in `<tool_call>` tags, one
parameter per tag, values written raw (strings as they are, other values as JSON).

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    <parameter=days>
    2
    </parameter>
    </function>
    </tool_call>

A value's type comes from the tool's schema, as the model cannot say it: a string parameter keeps its
text; any other is read as JSON (Python's `True`/`False`/`None`, which these templates write for
booleans and null in past calls, are read too). Recognised by `<tool_call>` with `<function=` and
`<parameter=` in the template, ahead of Hermes' plain `<tool_call>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from localai.structured import json_rule, regex_literal
from localai.tools.format import Markup, literal, more
from localai.tools.spec import Tool, Written

_FUNCTION = re.compile(r"<function=([^>\n]*)>(.*?)</function>", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\n]*)>\n?(.*?)\n?</parameter>", re.S)
_PYTHON_LITERALS = {"True": True, "False": False, "None": None}
_VALUE_END = "\n</parameter>\n"
NEWLINE = "\n"


class Nemotron3:
    name = "nemotron3"
    opening, closing = "<tool_call>", "</tool_call>"
    starts = ()

    def detects(self, template: str) -> bool:
        return all(marker in template for marker in (self.opening, "<function=", "<parameter="))

    def parse(self, block: str, tools: Sequence[Tool]) -> list[Written]:
        match = _FUNCTION.search(block)
        if match is None:
            return [Written("", problem="no complete <function=...>...</function> in the call")]
        name = match.group(1).strip()
        tool = next((t for t in tools if t.name == name), None)
        properties = tool.parameters.get("properties", {}) if tool else {}
        arguments = {key.strip(): _typed(value, properties.get(key.strip()))
                     for key, value in _PARAMETER.findall(match.group(2))}
        return [Written(name, arguments)]

    def calls_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> str:
        return (f"calls: call{more(NEWLINE, 'call', most)}\ncall: {markup(self.opening)} body\n"
                + self.body_rule(tools, markup, most=1))

    def body_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> str:
        """One function call: a block holds one call, whatever `most` is."""
        return f'body: "\\n" function {markup(self.closing)}\n' + _functions(tools)


def _typed(raw: str, schema: Any) -> Any:
    """A parameter's text as the value its schema's type says."""
    kinds = schema.get("type") if isinstance(schema, dict) else None
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if "string" in kinds or not kinds:
        return None if raw in ("null", "None") and "null" in kinds else raw
    if raw.strip() in _PYTHON_LITERALS:
        return _PYTHON_LITERALS[raw.strip()]
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # left as text: validation says it is not of the parameter's type


def _functions(tools: Sequence[Tool]) -> str:
    """Rule `function`: a call of any of `tools`, its parameters in the schema's order (optional ones may be
    left out)."""
    rules = [f"function: {' | '.join(f'f{i}' for i in range(len(tools)))}"]
    for i, tool in enumerate(tools):
        properties = tool.parameters.get("properties", {})
        required = set(tool.parameters.get("required", []))
        parts = []
        for j, (key, schema) in enumerate(properties.items()):
            rules.append(f"f{i}p{j}: {literal(f'<parameter={key}>' + chr(10))} f{i}v{j}")
            rules.append(_value_rule(f"f{i}v{j}", schema if isinstance(schema, dict) else {}))
            parts.append(f"f{i}p{j}" + ("" if key in required else "?"))
        rules.append(f"f{i}: {literal(f'<function={tool.name}>' + chr(10))} {' '.join(parts)} "
                     f"{literal('</function>' + chr(10))}")
    return "\n".join(rules) + "\n"


def _string_regex(schema: dict[str, Any]) -> str:
    """A raw string value's regex: its schema's anchored pattern, or any text within its length bounds
    (validation afterwards checks what a regex cannot)."""
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^") and pattern.endswith("$"):
        return regex_literal(pattern)
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if isinstance(low, int) and isinstance(high, int) and 0 <= low <= high:
        return f"/(?s:.{{{low},{high}}})/"
    return "/(?s:.*)/"


def _value_rule(name: str, schema: dict[str, Any]) -> str:
    """Rule `name`: one parameter's value and the markup that ends it."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    end = literal(_VALUE_END)
    if "enum" in schema and all(isinstance(v, str) for v in schema["enum"]) and schema["enum"]:
        return f"{name}: ({' | '.join(literal(v) for v in schema['enum'])}) {end}"
    if kinds == ["string"] or not kinds:
        return f"{name}[suffix={end}]: {_string_regex(schema)}"
    if kinds == ["boolean"]:
        return f'{name}: ("true" | "false" | "True" | "False") {end}'
    return f"{name}: {name}j {end}\n" + json_rule(f"{name}j", schema, lenient=True)


FORMAT = Nemotron3()
