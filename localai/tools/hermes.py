"""Qwen3's and Hermes' tool calls: a JSON object in `<tool_call>` tags, one block per call.

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

Templates list the tools as JSON lines in `<tools></tools>` and return results in `<tool_response>`
tags; the format is recognised by `<tool_call>` without Nemotron 3's `<function=` markup.
"""

from __future__ import annotations

from collections.abc import Sequence

from localai.structured import json_rule
from localai.tools.format import JsonInTags, Markup, call_object_schema, more
from localai.tools.spec import Tool

NEWLINE = "\n"


class Hermes(JsonInTags):
    name = "hermes"
    opening, closing = "<tool_call>", "</tool_call>"

    def calls_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> str:
        return (f"calls: call{more(NEWLINE, 'call', most)}\ncall: {markup(self.opening)} body\n"
                + self.body_rule(tools, markup, most=1))

    def body_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> str:
        """One call object on its own line: a block holds one call, whatever `most` is."""
        return (f'body: "\\n" call_json "\\n" {markup(self.closing)}\n'
                + json_rule("call_json", call_object_schema(tools, "arguments"), lenient=True))


FORMAT = Hermes()
