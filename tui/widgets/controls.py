"""The control panel: thinking switch, reasoning-budget slider, sampling settings.

Nothing applies mid-answer: `settings()` is read when the next turn starts.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.validation import Integer, Number
from textual.widgets import Input, Label, Switch

from tui.widgets.slider import Slider

BUDGET_MAX, BUDGET_STEP = 2048, 16


class ControlPanel(Vertical):
    DEFAULT_CSS = """
    ControlPanel { height: auto; padding: 0 1; }
    ControlPanel Horizontal { height: 1; margin-top: 1; }
    ControlPanel Label { width: 18; }
    ControlPanel Input { width: 1fr; height: 1; border: none; padding: 0 1; }
    ControlPanel Input.-invalid { background: $error 30%; }
    ControlPanel Switch { height: 1; border: none; padding: 0; width: auto; }
    ControlPanel .title { text-style: bold; }
    ControlPanel .budget-label { margin-top: 1; }
    """

    def __init__(self, *, think: bool | None = True, budget: int | None = None, temperature: float = 0.7,
                 top_p: float = 0.95, max_tokens: int = 1024) -> None:
        """`think` None: the model has no reasoning markers, so the thinking controls are disabled."""
        super().__init__(id="controls")
        self._initial = (think, budget, temperature, top_p, max_tokens)

    def compose(self) -> ComposeResult:
        think, budget, temperature, top_p, max_tokens = self._initial
        yield Label("Controls", classes="title")
        with Horizontal():
            yield Label("Thinking" if think is not None else "Thinking (n/a)")
            yield Switch(value=bool(think), id="think", disabled=think is None)
        yield Label("Reasoning budget", classes="budget-label")
        yield Slider(0, BUDGET_MAX, step=BUDGET_STEP, value=budget, unlimited=True, id="budget",
                     disabled=think is None)
        with Horizontal():
            yield Label("Temp")
            yield Input(str(temperature), id="temperature", validators=[Number(minimum=0, maximum=5)])
        with Horizontal():
            yield Label("top_p")
            yield Input(str(top_p), id="top_p", validators=[Number(minimum=0.01, maximum=1)])
        with Horizontal():
            yield Label("Max tokens")
            yield Input(str(max_tokens), id="max_tokens", validators=[Integer(minimum=1, maximum=1_000_000)])

    def settings(self) -> dict[str, Any]:
        """The settings for the next turn; a field that does not validate keeps its last good value."""
        switch = self.query_one("#think", Switch)
        values: dict[str, Any] = {} if switch.disabled else {
            "think": switch.value, "reasoning_budget": self.query_one("#budget", Slider).value}
        for name, cast in (("temperature", float), ("top_p", float), ("max_tokens", int)):
            field = self.query_one(f"#{name}", Input)
            if field.is_valid:
                values[name] = cast(field.value)
        return values
