"""The chat screen: transcript and prompt on the left, controls and profiling on the right.

Generation runs on a worker thread and puts the engine's events on a queue; the screen drains the
queue at a fixed frame rate and applies each frame's text in one append. However fast tokens arrive,
the interface does a bounded amount of work per frame and stays responsive.
"""

from __future__ import annotations

import queue
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from localai.conversation import Conversation
from localai.errors import LocalAIError, describe
from localai.events import ContentDelta, Final, Notice, ReasoningDelta, ToolCall
from localai.files import write_text_atomic
from localai.model import Model
from localai.options import ChatOptions, turn_settings
from localai.profiling import TurnMetrics, export_metrics
from tui.widgets.controls import ControlPanel
from tui.widgets.profiling import ProfilingPanel
from tui.widgets.prompt import PromptInput
from tui.widgets.transcript import AssistantMessage, Transcript, UserMessage

PLACEHOLDER = "Ask something · Enter sends · F1: keys"
TOOL_RESULT = "/tool "  # a message that starts so is the result of the next pending tool call
FRAME_SECONDS = 1 / 30
RATE_WINDOW_SECONDS = 0.25
_DONE = object()  # end of one turn's events


class ChatScreen(Screen[None]):
    # priority: the prompt (a TextArea) has its own uses for some of these keys
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop", priority=True),
        Binding("ctrl+n", "new_chat", "New chat", priority=True),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+r", "regenerate", "Regenerate", priority=True),
        Binding("ctrl+e", "export_metrics", "Export metrics", priority=True, show=False),
        Binding("ctrl+t", "toggle_thinking", "Thinking on/off", priority=True, show=False),
        Binding("ctrl+o", "show_thinking", "Show/hide thinking", priority=True, show=False),
    ]
    # below 100 columns the side panel narrows and drops the per-turn table (the last turn's figures stay;
    # Ctrl+E exports every turn), so the transcript keeps most of the width
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (100, "-wide")]

    def __init__(self, model: Model, options: ChatOptions, *, save_dir: Path, system: str | None = None,
                 placeholder: str | None = None) -> None:
        """`options`: where the controls start; each turn uses them as the controls then show them."""
        super().__init__()
        self.placeholder = placeholder or PLACEHOLDER
        self.model = model
        self.save_dir = save_dir
        self.conversation = Conversation(model, options, system=system)
        self.metrics: list[TurnMetrics] = []
        self.busy = False
        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._current: AssistantMessage | None = None
        self._previous_answer: AssistantMessage | None = None  # hidden while it is being regenerated
        self._question: str | None = None
        self._user: UserMessage | None = None
        self._reset_when_done = False
        self._turn_settings: dict[str, Any] = {}
        self._rate_baseline: int | None = None
        self._window_started = time.perf_counter()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="main"):
                yield Transcript(id="transcript")
                yield PromptInput(id="prompt", placeholder=self.placeholder)
            with Vertical(id="sidebar"):
                yield ControlPanel(self.conversation.options, thinking=self.model.format.thinking is not None)
                yield ProfilingPanel(self.model.backend.n_ctx)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "localai"
        self.sub_title = f"{self.model.manifest.name} · {self.model.backend.name} · offline"
        self.set_interval(FRAME_SECONDS, self._drain)
        self.call_after_refresh(self.query_one(PromptInput).focus)

    # --- turns -------------------------------------------------------------------------------------

    async def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        if self.busy:
            self.notify("The model is still answering: Esc stops it.", severity="warning")
            return
        self.busy = True  # before any await: a second Enter or Ctrl+R must not start another turn
        self.query_one(PromptInput).clear()
        self._question = message.text
        pending = self.conversation.pending_calls()
        result = message.text.removeprefix(TOOL_RESULT) if message.text.startswith(TOOL_RESULT) and pending else None
        tool = pending[0]["function"]["name"] if result is not None else None
        self._user = await self.query_one(Transcript).add_user(result or message.text, tool_result=tool)
        if result is not None and len(pending) > 1:  # recorded; the model answers once every call has its result
            list(self.conversation.send_tool_result(result))
            self._question = self._user = None
            self.busy = False
            return
        await self._start(message.text, tool_result=result)

    async def _start(self, text: str | None, *, tool_result: str | None = None) -> None:
        """Start a turn (self.busy already set): answer `text`, or regenerate the last answer (None), or send
        `tool_result` as the result of the next pending tool call."""
        options = self.query_one(ControlPanel).applied(self.conversation.options)  # its fields hold valid values
        self._turn_settings = turn_settings(options)  # for this turn's metrics
        self._cancel = threading.Event()
        self._current = await self.query_one(Transcript).add_assistant()
        self._rate_baseline: int | None = None
        self._window_started = time.perf_counter()
        self.run_worker(lambda: self._generate(text, options, tool_result), thread=True, group="generation")

    def _generate(self, text: str | None, options: ChatOptions, tool_result: str | None) -> None:
        """Worker thread: run the turn, hand every event to the interface."""
        try:
            if tool_result is not None:
                events = self.conversation.send_tool_result(tool_result, options, cancel=self._cancel)
            elif text is None:
                events = self.conversation.regenerate(options, cancel=self._cancel)
            else:
                events = self.conversation.send(text, options, cancel=self._cancel)
            for event in events:
                self._events.put(event)
        except Exception as exc:  # a failed turn (or a backend crash) must not take the app down
            self._events.put(exc)
        finally:
            self._events.put(_DONE)

    async def _drain(self) -> None:
        """Once a frame: apply what the worker produced since the last frame."""
        reasoning: list[str] = []
        answer: list[str] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, ReasoningDelta):
                reasoning.append(event.text)
            elif isinstance(event, ContentDelta):
                answer.append(event.text)
            else:
                await self._flush(reasoning, answer)
                reasoning, answer = [], []
                await self._handle(event)
        await self._flush(reasoning, answer)
        if self.busy:
            self._sample_rate()

    async def _flush(self, reasoning: list[str], answer: list[str]) -> None:
        if self._current is None:
            return
        if (reasoning or answer) and self._rate_baseline is None:
            self._rate_baseline = self.model.backend.n_past  # counting starts after the prompt
            self._window_started = time.perf_counter()
        if reasoning:
            await self._current.add_reasoning("".join(reasoning))
        if answer:
            await self._current.add_answer("".join(answer))

    async def _handle(self, event: object) -> None:
        if isinstance(event, Notice):
            self.notify(event.text, title="Note")
        elif isinstance(event, ToolCall) and self._current is not None:
            await self._current.add_tool_call(event)
        elif isinstance(event, Final):
            if self._previous_answer is not None:  # regenerated: the new answer replaces it
                await self._previous_answer.remove()
                self._previous_answer = None
            self._question = self._user = None
            metrics = TurnMetrics.of(len(self.metrics) + 1, event, self.model.backend.n_ctx, self._turn_settings)
            self.metrics.append(metrics)
            self.query_one(ProfilingPanel).record(metrics)
            if self._current is not None:
                await self._current.finish(event.usage.reasoning_tokens, _status(event))
        elif isinstance(event, BaseException):
            self.notify(describe(event), title="Generation failed", severity="error")
            await self._undo_failed_turn()
        elif event is _DONE:
            self.busy = False
            self._current = None
            if self._reset_when_done:
                await self._reset()

    async def _undo_failed_turn(self) -> None:
        """A turn that failed leaves no trace in the transcript (the history never had it); a new
        question goes back into the prompt to be edited or sent again."""
        if self._current is not None:
            await self._current.remove()
            self._current = None
        if self._previous_answer is not None:
            self._previous_answer.display = True
            self._previous_answer = None
        if self._question is not None and self._user is not None:
            await self._user.remove()
            prompt = self.query_one(PromptInput)
            if not prompt.text:
                prompt.text = self._question
        self._user = self._question = None

    def _sample_rate(self) -> None:
        elapsed = time.perf_counter() - self._window_started
        if self._rate_baseline is not None and elapsed >= RATE_WINDOW_SECONDS:
            n_past = self.model.backend.n_past
            self.query_one(ProfilingPanel).sample(max(0, n_past - self._rate_baseline) / elapsed)
            self._rate_baseline, self._window_started = n_past, time.perf_counter()

    # --- actions -----------------------------------------------------------------------------------

    def action_toggle_thinking(self) -> None:
        self.query_one(ControlPanel).toggle_thinking()

    def action_show_thinking(self) -> None:
        """Open or close the Thinking block of the last answer."""
        answers = self.query(AssistantMessage)
        if answers:
            answers.last().toggle_thinking()

    def action_stop(self) -> None:
        """Stop the answer; what was generated so far is kept."""
        if self.busy:
            self._cancel.set()

    async def action_new_chat(self) -> None:
        if self.busy:
            self._reset_when_done = True
            self._cancel.set()
        else:
            await self._reset()

    async def _reset(self) -> None:
        self._reset_when_done = False
        self.conversation.reset()
        await self.query_one(Transcript).remove_children()
        self.query_one(ProfilingPanel).clear()
        self.metrics.clear()
        self.notify("New chat")

    async def action_regenerate(self) -> None:
        if self.busy:
            self.notify("The model is still answering: Esc stops it.", severity="warning")
            return
        answers = self.query_one(Transcript).query(AssistantMessage)
        if not answers or not self.conversation.messages or self.conversation.messages[-1]["role"] != "assistant":
            self.notify("There is no answer to regenerate yet.", severity="warning")
            return
        self.busy = True
        self._question = self._user = None  # a failed regeneration keeps the question and its old answer
        previous = answers.last()
        previous.display = False
        self._previous_answer = previous
        await self._start(None)

    def action_save(self) -> None:
        """Save the conversation as JSON and Markdown (an answer still streaming is not included)."""
        try:
            stem = self._stem("chat")
            self.conversation.save(Path(f"{stem}.json"))
            write_text_atomic(Path(f"{stem}.md"), self.conversation.to_markdown())
        except (OSError, LocalAIError) as exc:
            self.notify(f"Cannot save: {getattr(exc, 'strerror', None) or exc}", severity="error")
            return
        note = " (without the answer in progress)" if self.busy else ""
        self.notify(f"{stem}.json and .md{note}", title="Saved")

    def action_export_metrics(self) -> None:
        """Export the session's per-turn metrics as CSV and JSON."""
        try:
            stem = self._stem("metrics")
            export_metrics(self.metrics, Path(f"{stem}.csv"))
            export_metrics(self.metrics, Path(f"{stem}.json"))
        except (OSError, LocalAIError) as exc:
            self.notify(f"Cannot export: {getattr(exc, 'strerror', None) or exc}", severity="error")
            return
        self.notify(f"Exported {stem}.csv and .json", title="Metrics")

    def _stem(self, kind: str) -> Path:
        """A file name without suffix (model names may hold dots, so suffixes are appended, never replaced)."""
        self.save_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return self.save_dir / f"{kind}-{self.model.manifest.name}-{stamp}"


def _status(final: Final) -> str:
    reasons = {"stop": "", "length": " · stopped at the token limit", "cancelled": " · stopped",
               "tool_calls": f" · {TOOL_RESULT}TEXT answers the first call"}
    rate = final.timings.decode_tokens_per_s
    return (f"{final.usage.completion_tokens} tokens"
            f"{f' · {rate:.0f} tok/s' if rate else ''}{reasons.get(final.finish_reason, '')}")
