"""The conversation: user messages (and tool results), and assistant messages with a collapsible "Thinking"
block and a collapsible block per tool call.

Streaming must cost the same per token however long the answer grows. Textual's Markdown widget does
not: every append re-lays out one widget per paragraph, list item and code block, and the whole screen
is re-arranged every frame, so a long answer slows the app to a crawl (measured: 25x the cost per token
at 6,000 tokens). Here the answer is Rich Markdown in a few Static widgets: a short live tail, redrawn
once a frame, and frozen chunks that are never touched again. Whenever the tail passes TAIL_CHARS, its
finished paragraphs (up to the last blank line outside a code fence) become a frozen chunk. The
reasoning goes to a Log, which draws only the lines in view.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from rich.markdown import Markdown
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Collapsible, Log, Static

from localai.events import ToolCall

TAIL_CHARS = 1200
_FENCE = re.compile(r"\s*(```|~~~)")


@dataclass(frozen=True)
class Split:
    """Where to cut a Markdown text into two documents that render as the one did."""

    at: int  # 0: no cut
    close: str = ""  # appended to the first part (closes a code block cut in two)
    reopen: str = ""  # prepended to the second part (reopens it)


def split_point(markdown: str, *, force: bool = False) -> Split:
    """After the last blank line outside a code block. With `force` (a long text without one), after the
    last line break instead, closing and reopening a code block cut in two. One pass over the text."""
    blank = line_end = 0
    fence = ""  # the opening line of the code block we are in, if any
    fence_at_line_end = ""
    position = 0
    for line in markdown.splitlines(keepends=True):
        position += len(line)
        if not line.endswith("\n"):
            break  # the last, unfinished line never ends a part
        if _FENCE.match(line):
            fence = "" if fence else line
        elif not fence and not line.strip():
            blank = position
        line_end, fence_at_line_end = position, fence
    if blank or not force:
        return Split(blank)
    if not line_end:
        return Split(0)
    marker = fence_at_line_end.strip()[:3]
    return Split(line_end, f"{marker}\n" if marker else "", fence_at_line_end)


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage { margin: 1 0 0 8; padding: 0 1; background: $boost; }
    UserMessage.tool-result { color: $text-muted; }
    """

    def __init__(self, text: str, *, tool_result: str | None = None) -> None:
        """`tool_result`: the name of the tool whose result `text` is."""
        super().__init__(f"{tool_result} returned: {text}" if tool_result else text, markup=False,
                         classes="tool-result" if tool_result else "")


class ToolCallBlock(Collapsible):
    """One tool call: the tool's name in the title, its arguments (as indented JSON) inside; an invalid call
    says why in its title and shows what the model wrote."""

    DEFAULT_CSS = """
    ToolCallBlock { margin: 0 1; padding: 0; border: none; background: $boost; }
    ToolCallBlock.invalid CollapsibleTitle { color: $error; }
    ToolCallBlock .arguments { padding: 0 1; }
    """

    def __init__(self, call: ToolCall) -> None:
        title = f"Tool call: {call.name}" if call.valid else f"Invalid tool call: {call.error}"
        body = Static(_arguments(call) if call.valid else call.text, markup=False, classes="arguments")
        super().__init__(body, title=title, collapsed=False, classes="" if call.valid else "invalid")
        self.call = call


def _arguments(call: ToolCall) -> str:
    return json.dumps(call.parsed_arguments(), indent=2, ensure_ascii=False)


class FrozenMarkdown(Widget):
    """A finished piece of the answer, drawn once per width: its lines are rendered when its width is
    known and its height is then fixed, so laying out the transcript never re-measures it."""

    DEFAULT_CSS = """
    FrozenMarkdown { height: auto; padding: 0 1; }
    """

    def __init__(self, markdown: str) -> None:
        super().__init__(classes="answer frozen")
        self.markdown = markdown
        self._lines: list[Strip] = []
        self._width = -1

    def on_resize(self, event: events.Resize) -> None:
        width = event.size.width
        if width != self._width and width > 0:
            self._width = width
            console = self.app.console
            lines = console.render_lines(Markdown(self.markdown), console.options.update_width(width), pad=True)
            self._lines = [Strip(line, width) for line in lines]
            self.styles.height = len(self._lines) + self.styles.padding.top + self.styles.padding.bottom
            self.refresh()

    def render_line(self, y: int) -> Strip:
        return self._lines[y] if y < len(self._lines) else Strip.blank(self.size.width)


class AssistantMessage(Vertical):
    DEFAULT_CSS = """
    AssistantMessage { height: auto; margin: 1 0 0 0; }
    AssistantMessage Collapsible { margin: 0; padding: 0; border: none; }
    AssistantMessage Log.reasoning { height: auto; max-height: 12; color: $text-muted; text-style: italic; }
    AssistantMessage .answer { padding: 0 1; }
    AssistantMessage .status { color: $text-muted; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.thinking = Collapsible(title="Thinking…", collapsed=False)
        self.reasoning = Log(classes="reasoning", auto_scroll=True)
        self.reasoning.can_focus = False  # Tab moves between the prompt and the controls; Ctrl+O opens this
        self.tail = Static("", classes="answer")
        self.status = Static("", classes="status")
        self._frozen: list[str] = []
        self._tail = ""
        self._reopen = ""  # a code fence the tail starts with because a cut fell inside a code block
        self.thinking.display = False

    @property
    def answer_text(self) -> str:
        """The whole answer so far (frozen chunks and the live tail)."""
        return "".join(self._frozen) + self._tail[len(self._reopen) :]

    def compose(self) -> ComposeResult:
        with self.thinking:
            yield self.reasoning
        yield self.tail
        yield self.status

    def on_mount(self) -> None:
        for title in self.thinking.query("CollapsibleTitle"):  # a click still opens and closes it
            title.can_focus = False

    def toggle_thinking(self) -> None:
        """Show or hide the Thinking block (if this answer has one)."""
        if self.thinking.display:
            self.thinking.collapsed = not self.thinking.collapsed

    async def add_reasoning(self, text: str) -> None:
        self.thinking.display = True
        self.reasoning.write(text)

    async def add_answer(self, text: str) -> None:
        self._tail += text
        if len(self._tail) > TAIL_CHARS:
            # a paragraph break if there is one; past 4x the size (long code, one endless paragraph) any line
            cut = split_point(self._tail, force=len(self._tail) > 4 * TAIL_CHARS)
            if cut.at > len(self._reopen):
                done, rest = self._tail[: cut.at], self._tail[cut.at :]
                self._frozen.append(done[len(self._reopen) :])  # the answer's own text, not the reopened fence
                self._tail, self._reopen = cut.reopen + rest, cut.reopen
                await self.mount(FrozenMarkdown(done + cut.close), before=self.tail)
        self.tail.update(Markdown(self._tail))

    async def add_tool_call(self, call: ToolCall) -> None:
        await self.mount(ToolCallBlock(call), before=self.status)

    async def finish(self, reasoning_tokens: int, status: str) -> None:
        if reasoning_tokens:
            self.thinking.title = f"Thinking ({reasoning_tokens} tokens)"
            self.thinking.collapsed = True
        self.status.update(status)


class Transcript(VerticalScroll):
    DEFAULT_CSS = """
    Transcript { height: 1fr; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.anchor()

    async def add_user(self, text: str, *, tool_result: str | None = None) -> UserMessage:
        message = UserMessage(text, tool_result=tool_result)
        await self.mount(message)
        return message

    async def add_assistant(self) -> AssistantMessage:
        message = AssistantMessage()
        await self.mount(message)
        return message
