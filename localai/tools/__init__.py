"""Tool calls: tools go into the model's own chat template (its `tools` variable), and the calls the model
writes come back as `ToolCall` events, read by its family's format. docs/tools.md has each format.

A format is one module with a `FORMAT` object (the `ToolFormat` Protocol of format.py) and one line in
`TOOL_FORMATS`, whose order is the order templates are matched in: the more specific markup first.
"""

from __future__ import annotations

import importlib

from localai.tools.format import ToolFormat

TOOL_FORMATS = {
    "nemotron_nano2": "localai.tools.nemotron_nano2",  # <TOOLCALL>[{...}]</TOOLCALL>
    "nemotron3": "localai.tools.nemotron3",  # <tool_call><function=...><parameter=...>, also Qwen3-Coder
    "hermes": "localai.tools.hermes",  # <tool_call>{...}</tool_call>: Qwen3, Hermes
    "llama3": "localai.tools.llama3",  # {"name": ..., "parameters": {...}}: Llama 3.1-3.3
}


def tool_format(name: str) -> ToolFormat:
    format_: ToolFormat = importlib.import_module(TOOL_FORMATS[name]).FORMAT
    return format_


def detect(template: str | None) -> ToolFormat | None:
    """The tool-call format a chat template renders, or None when it renders no tools."""
    if not template or "tools" not in template:
        return None
    return next((f for f in map(tool_format, TOOL_FORMATS) if f.detects(template)), None)
