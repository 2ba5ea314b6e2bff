"""The conversation: user messages, and assistant messages with a collapsible "Thinking" block.

Streaming must cost the same per token however long the answer grows. Textual's Markdown widget does
not: every append re-lays out one widget per paragraph, list item and code block, and the whole screen
is re-arranged every frame, so a long answer slows the app to a crawl (measured: 25x the cost per token
at 6,000 tokens). Here the answer is Rich Markdown in a few Static widgets: a short live tail, redrawn
once a frame, and frozen chunks that are never touched again. Whenever the tail passes TAIL_CHARS, its
finished paragraphs (up to the last blank line outside a code fence) become a frozen chunk. The
reasoning goes to a Log, which draws only the lines in view.
"""

from __future__ import annotations

import re

from rich.markdown import Markdown
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Collapsible, Log, Static

TAIL_CHARS = 1200
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


def split_point(markdown: str) -> int:
    """Where `markdown` can be cut into two independent documents: after the last blank line outside a
    code fence (0 if there is none)."""
    cut = 0
    for match in re.finditer(r"\n\n", markdown):
        end = match.end()
        if len(_FENCE.findall(markdown, 0, end)) % 2 == 0:
            cut = end
    return cut


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage { margin: 1 0 0 8; padding: 0 1; background: $boost; }
    """

    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False)


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
        self.tail = Static("", classes="answer")
        self.status = Static("", classes="status")
        self._frozen: list[str] = []
        self._tail = ""
        self.thinking.display = False

    @property
    def answer_text(self) -> str:
        """The whole answer so far (frozen chunks and the live tail)."""
        return "".join(self._frozen) + self._tail

    def compose(self) -> ComposeResult:
        with self.thinking:
            yield self.reasoning
        yield self.tail
        yield self.status

    async def add_reasoning(self, text: str) -> None:
        self.thinking.display = True
        self.reasoning.write(text)

    async def add_answer(self, text: str) -> None:
        self._tail += text
        if len(self._tail) > TAIL_CHARS and (cut := split_point(self._tail)):
            done, self._tail = self._tail[:cut], self._tail[cut:]
            self._frozen.append(done)
            await self.mount(FrozenMarkdown(done), before=self.tail)
        self.tail.update(Markdown(self._tail))

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

    async def add_user(self, text: str) -> None:
        await self.mount(UserMessage(text))

    async def add_assistant(self) -> AssistantMessage:
        message = AssistantMessage()
        await self.mount(message)
        return message
