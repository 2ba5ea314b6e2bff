"""F1: the keys, and how to close this (Esc, F1 or q)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

KEYS = (
    ("Enter", "send the message"),
    ("Tab, Shift+Tab", "next / previous field"),
    ("Ctrl+J, Shift+Enter", "new line in the message"),
    ("Esc", "stop the answer (what it said is kept)"),
    ("Ctrl+T", "thinking on/off"),
    ("Ctrl+O", "show/hide the last thinking (or click it)"),
    ("Ctrl+N", "new chat"),
    ("Ctrl+R", "regenerate the last answer"),
    ("Ctrl+S", "save the conversation (JSON and Markdown)"),
    ("Ctrl+E", "export the session's metrics (CSV and JSON)"),
    ("Ctrl+P", "command palette"),
    ("F1", "this help"),
    ("Ctrl+Q", "quit"),
)
SLIDER = ("Reasoning budget slider: ←/→ one step, PgUp/PgDn ten steps, Home/End the ends (far right: "
          "unlimited), or click and drag. Settings apply to the next turn. Nothing here uses the network.")


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column(style="bold")
        table.add_column()
        for key, meaning in KEYS:
            table.add_row(key, meaning)
        with Vertical(id="help"):
            yield Label("Keys · Esc closes this help", classes="title")
            yield Static(table)
            yield Static(SLIDER, classes="note")
