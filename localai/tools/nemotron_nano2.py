"""NVIDIA Nemotron Nano 2's tool calls: one JSON array of call objects in `<TOOLCALL>` tags.

    <TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</TOOLCALL>

Its template lists the tools in `<AVAILABLE_TOOLS>` in the system turn and returns results in one user
turn as `<TOOL_RESPONSE>[...]</TOOL_RESPONSE>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from localai.structured import json_rule
from localai.tools.format import JsonInTags, Markup, call_object_schema
from localai.tools.spec import Tool


class NemotronNano2(JsonInTags):
    name = "nemotron_nano2"
    opening, closing = "<TOOLCALL>", "</TOOLCALL>"

    def calls_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> str:
        return f"calls: {markup(self.opening)} body\n" + self.body_rule(tools, markup, most=most)

    def body_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> str:
        """One list of 1 to `most` call objects."""
        rule = json_rule("call_list", _list_schema(tools, most), lenient=True)
        return f"body: call_list {markup(self.closing)}\n{rule}"


def _list_schema(tools: Sequence[Tool], most: int) -> dict[str, Any]:
    return {"type": "array", "items": call_object_schema(tools, "arguments"), "minItems": 1, "maxItems": most}


FORMAT = NemotronNano2()
