"""Meta Llama 3.1-3.3's tool calls: the whole answer is one JSON object with the function's `name` and its
`parameters`, sometimes after `<|python_tag|>`.

    {"name": "get_weather", "parameters": {"city": "Paris"}}

Recognised by the template's `ipython` role (tool results come back as `ipython` turns). A model answers
either with a call or with text, so an answer counts as a call only when it starts with `{` or
`<|python_tag|>`; the "auto" mode has no opening to wait for and leaves such calls to validation.
Several calls separated by `;` are read, as some fine-tunes write them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from localai.structured import json_rule
from localai.tools.format import Markup, call_object_schema, more, written_call
from localai.tools.spec import Tool, Written

PYTHON_TAG = "<|python_tag|>"


class Llama3:
    name = "llama3"
    opening, closing = "", ""
    starts = (PYTHON_TAG, "{")

    def detects(self, template: str) -> bool:
        return "ipython" in template

    def parse(self, block: str, tools: Sequence[Tool]) -> list[Written]:
        text, calls, decoder = block.strip().removeprefix(PYTHON_TAG).strip(), [], json.JSONDecoder()
        while text:
            try:
                value, end = decoder.raw_decode(text)
            except ValueError as exc:
                return [*calls, Written("", problem=f"not JSON: {exc}")]
            calls.append(written_call(value, "parameters"))
            text = text[end:].strip().removeprefix(";").strip()
        return calls or [Written("", problem="no call")]

    def calls_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> str:
        rule = json_rule("call_json", call_object_schema(tools, "parameters"), lenient=True)
        return f"calls: call_json{more('; ', 'call_json', most)}\n{rule}"

    def body_rule(self, tools: Sequence[Tool], markup: Markup, *, most: int) -> None:
        return None


FORMAT = Llama3()
