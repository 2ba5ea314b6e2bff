"""What a request streams: reasoning and content deltas (which concatenate exactly to the final texts),
notices, and one final event with the finish reason, usage and timings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class Notice:
    """Something the user should see once (fallback template, dropped turns, ignored settings).

    `dropped_messages`: how many of the oldest messages (after the system prompt) this request left out
    to fit the context; a `Conversation` forgets them too.
    """

    text: str
    dropped_messages: int = 0


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model wrote, once it is complete. `arguments`: the arguments as JSON text (OpenAI's
    form; "" when none could be read); `text`: what the model wrote for the call, markup included; `error`:
    why the call is invalid (unknown tool, arguments that are not JSON or do not match the tool's
    parameters, a call cut off), None for a valid call."""

    id: str
    name: str
    arguments: str
    text: str = ""
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None

    def openai(self) -> dict[str, Any]:
        """The call as OpenAI writes one in an assistant message (arguments as JSON text)."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict (a valid call's are a JSON object)."""
        value = json.loads(self.arguments) if self.arguments else {}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    reasoning_tokens: int  # generated inside the think block (part of completion_tokens)
    completion_tokens: int  # every sampled token; the end-of-thinking text the engine adds is not one


@dataclass(frozen=True)
class Timings:
    ttft_ms: float | None
    prefill_tokens_per_s: float | None
    decode_tokens_per_s: float | None
    total_ms: float


@dataclass(frozen=True)
class Final:
    content: str
    reasoning: str
    # "stop": end-of-turn token, stop string or a complete constrained answer; "tool_calls": the answer
    # ends with valid tool calls; "length": max_tokens or context full; "cancelled"
    finish_reason: str
    usage: Usage
    timings: Timings
    tokens: list[int] = field(default_factory=list)  # what followed the prompt in the context, in order
    cached_tokens: int = 0  # prompt tokens restored from a turn snapshot instead of processed
    tool_calls: tuple[ToolCall, ...] = ()  # valid and invalid ones, in order; `content` holds neither

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape of `localai run --json` (content, reasoning, finish_reason, usage,
        timings, and tool_calls when the request had tools)."""
        data = asdict(self)
        del data["tokens"], data["cached_tokens"]
        if not self.tool_calls:
            del data["tool_calls"]
        return data

    def message(self) -> dict[str, Any]:
        """The answer as the assistant message that continues the conversation (OpenAI's shape): its content
        and its valid calls, each with its id for the tool results to name."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        calls = [call.openai() for call in self.tool_calls if call.valid]
        if calls:
            message["tool_calls"] = calls
        return message


Event = ReasoningDelta | ContentDelta | ToolCall | Notice | Final


def collect(events: Iterator[Event]) -> Final:
    """Run a request to its end and return the final event."""
    final = None
    for event in events:
        if isinstance(event, Final):
            final = event
    assert final is not None
    return final
