"""What a request streams: reasoning and content deltas (which concatenate exactly to the final texts),
notices, and one final event with the finish reason, usage and timings."""

from __future__ import annotations

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
    # "stop": end-of-turn token or stop string; "length": max_tokens or context full; "cancelled"
    finish_reason: str
    usage: Usage
    timings: Timings
    tokens: list[int] = field(default_factory=list)  # what followed the prompt in the context, in order
    cached_tokens: int = 0  # prompt tokens restored from a turn snapshot instead of processed

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape of `localai run --json` (content, reasoning, finish_reason, usage,
        timings)."""
        data = asdict(self)
        del data["tokens"], data["cached_tokens"]
        return data


Event = ReasoningDelta | ContentDelta | Notice | Final


def collect(events: Iterator[Event]) -> Final:
    """Run a request to its end and return the final event."""
    final = None
    for event in events:
        if isinstance(event, Final):
            final = event
    assert final is not None
    return final
