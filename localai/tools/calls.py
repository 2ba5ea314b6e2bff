"""Tool calls out of a streamed answer. Content passes through until a format's opening markup; the text
up to its closing markup is one block of calls, read once complete and sent as `ToolCall` events; the
final event's content is the text outside the blocks, and its `tool_calls` every call, valid or not.

Whitespace around blocks is framing, not content: it is held back until more text follows (then what the
model wrote before the block separates the two: "a\n\n<call>\nb" gives "a\n\nb").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from localai.events import ContentDelta, Event, Final, ToolCall
from localai.textstream import HoldbackMatcher
from localai.tools.format import ToolFormat
from localai.tools.spec import Tool, Written, checked_call

TEXT, BLOCK, OPEN_BLOCK = "text", "block", "open block"


class CallSplitter:
    """Splits answer text at a format's markup into ("text", ...) and ("block", ...) pieces; at the end
    an unclosed block is ("open block", ...)."""

    def __init__(self, fmt: ToolFormat) -> None:
        self.fmt = fmt
        self._opening = HoldbackMatcher([fmt.opening])
        self._closing = HoldbackMatcher([fmt.closing])
        self._block: list[str] | None = None
        self._start: str | None = "" if fmt.starts else None  # the answer's first text, until it decides

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while text:
            if self._block is not None:
                if not self.fmt.closing:  # the block runs to the end of the answer
                    self._block.append(text)
                    return out
                released, match, text = self._closing.feed(text)
                self._block.append(released)
                if match is None:
                    return out
                out.append((BLOCK, "".join(self._block)))
                self._block = None
            elif self._start is not None:
                text = self._decide_start(text, out)
            else:
                released, match, text = self._opening.feed(text) if self.fmt.opening else (text, None, "")
                if released:
                    out.append((TEXT, released))
                if match is None:
                    return out
                self._block = []
        return out

    def _decide_start(self, text: str, out: list[tuple[str, str]]) -> str:
        """The answer's start decides whether it is a block (Llama 3): held while it could still be one."""
        assert self._start is not None
        start = (self._start + text).lstrip()
        if any(start.startswith(s) for s in self.fmt.starts):
            self._block, self._start = [start], None
        elif not start or any(s.startswith(start) for s in self.fmt.starts):
            self._start = start
        else:
            out.append((TEXT, start))
            self._start = None
        return ""

    def flush(self) -> list[tuple[str, str]]:
        if self._block is not None:
            block, self._block = "".join(self._block) + self._closing.flush(), None
            return [(OPEN_BLOCK, block)]
        held = (self._start or "") + self._opening.flush()
        self._start = None
        return [(TEXT, held)] if held else []


def with_tool_calls(events: Iterator[Event], fmt: ToolFormat, tools: Sequence[Tool]) -> Iterator[Event]:
    """`events` with the answer's calls read out of its content (see the module docstring)."""
    splitter, answer = CallSplitter(fmt), _Answer(fmt, tuple(tools))
    for event in events:
        if isinstance(event, ContentDelta):
            yield from answer.take(splitter.feed(event.text))
        elif isinstance(event, Final):
            yield from answer.take(splitter.flush(), ended_turn=event.finish_reason == "stop")
            valid = any(call.valid for call in answer.calls)
            finish = "tool_calls" if valid and event.finish_reason == "stop" else event.finish_reason
            yield dataclasses.replace(event, content="".join(answer.content), tool_calls=tuple(answer.calls),
                                      finish_reason=finish)
        else:
            yield event


class _Answer:
    """The content and calls so far; whitespace next to a block held back or dropped."""

    def __init__(self, fmt: ToolFormat, tools: tuple[Tool, ...]) -> None:
        self.fmt, self.tools = fmt, tools
        self.content: list[str] = []
        self.calls: list[ToolCall] = []
        self._held = ""  # trailing whitespace of the content so far
        self._after_block = False

    def take(self, pieces: list[tuple[str, str]], *, ended_turn: bool = False) -> Iterator[Event]:
        for kind, text in pieces:
            if kind == TEXT:
                yield from self._text(text)
            else:
                self._after_block = True
                for call in self._read(text, complete=kind == BLOCK or ended_turn):
                    self.calls.append(call)
                    yield call

    def _text(self, text: str) -> Iterator[Event]:
        if self._after_block:
            text = text.lstrip()
        body = text.rstrip()
        if body:
            released = self._held + body
            self.content.append(released)
            self._after_block = False
            self._held = text[len(body) :]
            yield ContentDelta(released)
        else:
            self._held += text

    def _read(self, block: str, *, complete: bool) -> list[ToolCall]:
        """The calls of `block`; one that was cut off (no closing markup, the turn not ended) is invalid."""
        markup = self.fmt.opening + block + (self.fmt.closing if complete else "")
        written = self.fmt.parse(block, self.tools) if block.strip() or complete else []
        if not complete:
            cut = "the call was cut off before it was complete"
            written = [Written(w.name, w.arguments, cut) for w in written] or [Written("", problem=cut)]
        return [checked_call(w, self.tools, markup) for w in written]
