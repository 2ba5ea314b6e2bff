"""Tools as a request declares them (OpenAI's function-tool shape), checked once; and the calls a model
makes, checked against them.

A tool's parameters must be a JSON Schema object (localai/schemas.py); a call's arguments must be a JSON
object that validates against it. A call that does not is kept, with `error` saying why: it is reported
as invalid, never passed on as if it were a call.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from localai import schemas
from localai.errors import SettingError
from localai.events import ToolCall
from localai.units import shown

MAX_TOOLS = 128
MAX_DESCRIPTION_CHARS = 8192
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # OpenAI's rule, dots allowed (namespaced tools)
CHOICES = ("auto", "none", "required")
NO_PARAMETERS = {"type": "object", "properties": {}}


class ToolError(SettingError):
    """A tool definition or tool choice that cannot be used."""


@dataclass(frozen=True)
class Tool:
    """One function the model may call: its name, what it does, and its parameters' JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: dict(NO_PARAMETERS))

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise ToolError(f"a tool's name must be 1-64 letters, digits, '_', '.' or '-', got {shown(self.name)}")
        if not isinstance(self.description, str) or len(self.description) > MAX_DESCRIPTION_CHARS:
            raise ToolError(f"tool {self.name}: the description must be text of at most {MAX_DESCRIPTION_CHARS} "
                            "characters")
        schema = schemas.check(self.parameters, f"tool {self.name}'s parameters", parse_error=ToolError)
        if schema.get("type", "object") != "object":
            raise ToolError(f"tool {self.name}'s parameters must be a schema of type object, got type "
                            f"{shown(schema.get('type'))}")

    @classmethod
    def of(cls, definition: Any) -> Tool:
        """A tool from OpenAI's `{"type": "function", "function": {...}}` or from the bare function object."""
        if isinstance(definition, Tool):
            return definition
        if not isinstance(definition, dict):
            raise ToolError(f"a tool must be a JSON object, got {shown(definition)}")
        if definition.get("type", "function") != "function":
            raise ToolError(f"only function tools are supported, got type {shown(definition.get('type'))}")
        if "function" in definition:
            definition = definition["function"]
            if not isinstance(definition, dict):
                raise ToolError(f"a tool's function must be a JSON object, got {shown(definition)}")
        return cls(definition.get("name"), definition.get("description") or "",
                   definition.get("parameters") or dict(NO_PARAMETERS))

    def to_openai(self) -> dict[str, Any]:
        """The shape chat templates read (transformers passes tools to templates so)."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}


def tools_of(definitions: Any) -> tuple[Tool, ...]:
    """A request's tool list, checked: at most MAX_TOOLS, names unique."""
    if not isinstance(definitions, list | tuple):
        raise ToolError(f"tools must be a list, got {shown(definitions)}")
    if len(definitions) > MAX_TOOLS:
        raise ToolError(f"at most {MAX_TOOLS} tools, got {len(definitions)}")
    tools = tuple(Tool.of(d) for d in definitions)
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise ToolError(f"two tools are named {shown(next(n for n in names if names.count(n) > 1))}")
    return tools


def check_choice(choice: str, tools: tuple[Tool, ...]) -> None:
    """`choice`: "auto", "none", "required" or the name of one of `tools` (a call to it is forced)."""
    if not isinstance(choice, str):
        raise ToolError(f"tool_choice must be auto, none, required or a tool's name, got {shown(choice)}")
    if choice in CHOICES:
        if choice == "required" and not tools:
            raise ToolError("tool_choice required needs tools")
        return
    if choice not in {t.name for t in tools}:
        raise ToolError(f"tool_choice names no tool of this request: {shown(choice)}")


@dataclass(frozen=True)
class Written:
    """A call as a format's parser read it from the model's text: a name and arguments (None when they
    could not be read), or a reason it could not be read at all."""

    name: str
    arguments: Any = None
    problem: str | None = None


def checked_call(written: Written, tools: tuple[Tool, ...], text: str) -> ToolCall:
    """The call `written` checked against `tools`: a known name, a JSON object of arguments that validates
    against the tool's schema; otherwise the call carries the reason in `error`."""
    tool = next((t for t in tools if t.name == written.name), None)
    error = written.problem
    if error is None and tool is None:
        error = f"the model called {shown(written.name)}, which is not one of the tools"
    elif error is None and not isinstance(written.arguments, dict):
        error = f"the arguments are not a JSON object: {shown(written.arguments)}"
    elif error is None and tool is not None:
        problem = schemas.problem(written.arguments, tool.parameters)
        error = f"the arguments do not match the parameters: {problem}" if problem else None
    arguments = "" if written.arguments is None else json.dumps(written.arguments, ensure_ascii=False)
    return ToolCall(id=f"call_{secrets.token_hex(12)}", name=written.name, arguments=arguments, text=text,
                    error=error)


def for_template(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as chat templates read them (transformers' convention): each call's arguments an object, not
    OpenAI's JSON text, and the content of an assistant message with calls text, not null. Templates
    index calls as `call.function.name`; calls are kept in that shape."""
    return [_template_message(i, m) if m.get("tool_calls") else m for i, m in enumerate(messages)]


def _template_message(index: int, message: dict[str, Any]) -> dict[str, Any]:
    calls = message["tool_calls"]
    if not isinstance(calls, list):
        raise ToolError(f"messages[{index}].tool_calls must be a list")
    shaped = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ToolError(f"messages[{index}].tool_calls[{j}] must hold a function with a name")
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                arguments = None
        if not isinstance(arguments, dict):
            raise ToolError(f"messages[{index}].tool_calls[{j}].function.arguments must be a JSON object")
        shaped.append({**call, "type": "function", "function": {**function, "arguments": arguments}})
    return {**message, "content": message.get("content") or "", "tool_calls": shaped}
