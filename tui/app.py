"""The `localai chat` app: a model picker, then the chat screen. Models load on a worker thread; a
model that fails to load is reported as a notification and the picker stays open."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

import localai
from localai.errors import describe
from localai.model import Model
from tui.screens.chat import ChatScreen
from tui.screens.help import HelpScreen
from tui.screens.picker import PickerScreen

GIL_SWITCH_SECONDS = 0.0005


class ChatApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "localai"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help"),
    ]

    def __init__(self, model: str | None = None, *, load_options: dict[str, Any] | None = None,
                 settings: dict[str, Any] | None = None, save_dir: Path, system: str | None = None,
                 placeholder: str | None = None) -> None:
        """`settings`: changes to each opened model's defaults, by `ChatOptions.changed` name (the command
        line's); `placeholder`: the empty prompt's hint (what to ask this model), instead of the generic one."""
        super().__init__()
        self.placeholder = placeholder
        self.model_ref = model
        self.load_options = load_options or {}
        self.settings = settings or {}
        self.save_dir = save_dir
        self.system = system
        self.model: Model | None = None
        self._loading = False

    def on_mount(self) -> None:
        # generation runs on a worker thread that needs the GIL for a moment per token; Python's default
        # 5 ms switch interval would let a busy interface hold it for up to 5 ms each time
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        self.push_screen(PickerScreen())
        if self.model_ref:
            self.open_model(self.model_ref)

    def open_model(self, ref: str) -> None:
        """Load `ref` on a worker thread, then open the chat on it (one load at a time)."""
        if self._loading:
            self.notify("A model is already loading.", severity="warning")
            return
        self._loading = True
        self.notify(f"Loading {Path(ref).name} …", timeout=2)
        self.run_worker(lambda: self._load(ref), thread=True, group="load")

    def _load(self, ref: str) -> None:
        try:
            model = localai.load(ref, **self.load_options)
        except Exception as exc:  # the app keeps running; the picker stays open
            self._from_worker(self._load_failed, describe(exc))
            return
        if not self._from_worker(self._open_chat, model):
            model.close()  # the app quit while the model was loading

    def _from_worker(self, callback: Any, *args: Any) -> bool:
        try:
            self.call_from_thread(callback, *args)
        except RuntimeError:  # the app is no longer running
            return False
        return True

    def _load_failed(self, message: str) -> None:
        self._loading = False
        self.notify(message, title="Cannot load the model", severity="error", timeout=10)

    def _open_chat(self, model: Model) -> None:
        self._loading = False
        try:
            screen = ChatScreen(model, model.defaults.changed(**self.settings), save_dir=self.save_dir,
                                system=self.system, placeholder=self.placeholder)
        except localai.LocalAIError as exc:
            model.close()
            self.notify(str(exc), title="Cannot open the chat", severity="error", timeout=10)
            return
        self._stop_generation()
        if self.model is not None:
            self.model.close()  # waits for the old chat's generation to stop at its next token
        self.model = model
        self.push_screen(screen)

    def _stop_generation(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ChatScreen):
                screen.action_stop()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Show the keys (F1)", self.action_help)
        if isinstance(screen, ChatScreen):
            yield SystemCommand("Stop", "Stop the answer, keep what it said (Esc)", screen.action_stop)
            yield SystemCommand("New chat", "Forget the conversation (Ctrl+N)", screen.action_new_chat)
            yield SystemCommand("Regenerate", "Answer the last message again (Ctrl+R)", screen.action_regenerate)
            yield SystemCommand("Save", "Save the conversation as JSON and Markdown (Ctrl+S)", screen.action_save)
            yield SystemCommand("Export metrics", "Per-turn metrics as CSV and JSON (Ctrl+E)",
                                screen.action_export_metrics)

    async def action_quit(self) -> None:
        self._stop_generation()
        await super().action_quit()

    def on_unmount(self) -> None:
        self._stop_generation()
        if self.model is not None:
            self.model.close()  # waits for a generating thread's current step
