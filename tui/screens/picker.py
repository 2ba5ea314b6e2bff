"""Choose a model: the packages in the local store, or a path to a package or a bare .gguf file.

Focus starts on the list (arrows and Enter open a package); typing a character there moves focus to the
path box and keeps the character, so a path typed straight away is never lost to the list.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label

from localai import store
from localai.units import human_bytes


class PickerScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="picker"):
            yield Label(f"Models in {store.models_dir()}", classes="title")
            table = DataTable(id="models", cursor_type="row", zebra_stripes=True)
            table.add_columns("name", "architecture", "format", "quant", "size", "created")
            yield table
            yield Label("…or type a path to a package folder or a .gguf file (Tab moves between the two):")
            yield Input(placeholder="/path/to/model.gguf", id="path", select_on_focus=False)
        yield Footer()

    def on_mount(self) -> None:
        self.title, self.sub_title = "localai", "choose a model"
        table = self.query_one("#models", DataTable)
        for package in store.packages():
            m = package.manifest
            kind = (m.artifacts[0].format, m.artifacts[0].quant) if m.artifacts else ("—", "—")
            size = human_bytes(sum(a.bytes for a in m.artifacts))
            table.add_row(m.name, m.architecture, *kind, size, m.created[:10], key=str(package.root))
        if table.row_count:
            table.focus()
        else:
            self.query_one("#path", Input).focus()
            self.notify("The store is empty: convert a model with `localai convert`, or give a path.")

    def on_key(self, event: events.Key) -> None:
        path = self.query_one("#path", Input)
        if event.is_printable and event.character and event.character != " " and not path.has_focus:
            event.stop()
            event.prevent_default()
            path.focus()
            path.insert_text_at_cursor(event.character)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_model(str(event.row_key.value))  # type: ignore[attr-defined]

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.app.open_model(event.value.strip())  # type: ignore[attr-defined]
