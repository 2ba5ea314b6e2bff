"""The conversation: user messages, and assistant messages with a collapsible "Thinking" block.

Streaming text is appended, never re-set: the reasoning goes to a Log (which draws only the lines in
view) and the answer to Textual's MarkdownStream, which batches fragments and re-parses only the last
block, so the cost of a token does not grow with the length of the answer.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Collapsible, Log, Markdown, Static
from textual.widgets.markdown import MarkdownStream


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage { margin: 1 0 0 8; padding: 0 1; background: $boost; }
    """

    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False)


class AssistantMessage(Vertical):
    DEFAULT_CSS = """
    AssistantMessage { height: auto; margin: 1 0 0 0; }
    AssistantMessage Collapsible { margin: 0; padding: 0; border: none; }
    AssistantMessage Log.reasoning { height: auto; max-height: 12; color: $text-muted; text-style: italic; }
    AssistantMessage Markdown { margin: 0; padding: 0 1; }
    AssistantMessage .status { color: $text-muted; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.thinking = Collapsible(title="Thinking…", collapsed=False)
        self.reasoning = Log(classes="reasoning", auto_scroll=True)
        self.answer = Markdown()
        self.status = Static("", classes="status")
        self._stream: MarkdownStream | None = None
        self.thinking.display = False

    def compose(self) -> ComposeResult:
        with self.thinking:
            yield self.reasoning
        yield self.answer
        yield self.status

    async def add_reasoning(self, text: str) -> None:
        self.thinking.display = True
        self.reasoning.write(text)

    async def add_answer(self, text: str) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self.answer)
        await self._stream.write(text)

    async def finish(self, reasoning_tokens: int, status: str) -> None:
        if self._stream is not None:
            await self._stream.stop()
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
