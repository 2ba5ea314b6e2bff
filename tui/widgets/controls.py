"""The control panel: thinking switch, reasoning-budget slider, sampling settings.

Nothing applies mid-answer: `applied()` is read when the next turn starts. Every field shows its value
in every state: inputs are compact (Textual's own one-line style, which keeps no border when focused or
invalid), the switch's state is also written next to it, the focused row's label lights up, and a field
that does not validate says why underneath.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.validation import Integer, Number
from textual.widgets import Input, Label, Static, Switch

from localai.options import ChatOptions
from tui.widgets.slider import Slider

BUDGET_MAX, BUDGET_STEP = 2048, 16
FIELDS = {"temperature": "Temp", "top_p": "top_p", "max_tokens": "Max tokens"}
CASTS: dict[str, type] = {"temperature": float, "top_p": float, "max_tokens": int}


class ControlPanel(Vertical):
    DEFAULT_CSS = """
    ControlPanel { height: auto; padding: 0 1; }
    ControlPanel Horizontal { height: 1; margin-top: 1; }
    ControlPanel Label { width: 18; }
    ControlPanel Input { width: 1fr; }
    ControlPanel Switch, ControlPanel Switch:focus { height: 1; border: none; padding: 0; width: auto; }
    ControlPanel #think-state { width: auto; padding: 0 1; }
    ControlPanel Horizontal.-focused > Label, ControlPanel .budget-label.-focused {
        color: $accent; text-style: bold;
    }
    ControlPanel .title { text-style: bold; }
    ControlPanel .budget-label { margin-top: 1; width: 1fr; }
    ControlPanel #field-error { color: $error; width: 1fr; height: auto; margin-top: 1; }
    """

    def __init__(self, options: ChatOptions, *, thinking: bool = True) -> None:
        """The controls start at `options`; `thinking` False: the model has no reasoning markers, so the
        thinking controls are disabled (the switch starts on when the template's default decides)."""
        super().__init__(id="controls")
        self._think = (options.think is not False) if thinking else None
        self._budget = options.reasoning_budget
        self._good: dict[str, Any] = {"temperature": options.sampling.temperature, "top_p": options.sampling.top_p,
                                      "max_tokens": options.max_tokens}

    def compose(self) -> ComposeResult:
        think, budget = self._think, self._budget
        temperature, top_p, max_tokens = (self._good[name] for name in FIELDS)
        yield Label("Controls", classes="title")
        with Horizontal():
            yield Label("Thinking" if think is not None else "Thinking (n/a)")
            yield Switch(value=bool(think), id="think", disabled=think is None)
            yield Label(_on_off(bool(think)) if think is not None else "", id="think-state")
        yield Label("Reasoning budget", classes="budget-label")
        yield Slider(0, BUDGET_MAX, step=BUDGET_STEP, value=budget, unlimited=True, id="budget",
                     disabled=think is None)
        for name, value, validator in (("temperature", temperature, Number(minimum=0, maximum=5)),
                                       ("top_p", top_p, Number(minimum=0.01, maximum=1)),
                                       ("max_tokens", max_tokens, Integer(minimum=1, maximum=1_000_000))):
            with Horizontal():
                yield Label(FIELDS[name])
                yield Input(str(value), id=name, validators=[validator], compact=True)
        yield Static("", id="field-error")

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self.query_one("#think-state", Label).update(_on_off(event.value))

    def toggle_thinking(self) -> None:
        """Ctrl+T: flip the switch from wherever focus is (nothing happens without reasoning markers)."""
        switch = self.query_one("#think", Switch)
        if not switch.disabled:
            switch.toggle()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Light up the focused control's label (CSS :focus-within would not restyle the labels)."""
        for row in self.query(Horizontal):
            row.set_class(event.widget in row.children, "-focused")
        self.query_one(".budget-label", Label).set_class(isinstance(event.widget, Slider), "-focused")

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        for widget in self.query(".-focused"):
            widget.remove_class("-focused")

    def on_input_changed(self, event: Input.Changed) -> None:
        """Keep each field's last good value; say under the fields what is wrong with each one that does
        not validate."""
        problems = []
        for name, label in FIELDS.items():
            field = self.query_one(f"#{name}", Input)
            result = field.validate(field.value)
            if result is None or result.is_valid:
                self._good[name] = CASTS[name](field.value)
            else:
                reason = " ".join(result.failure_descriptions).rstrip(".").lower()
                problems.append(f"{label}: {reason}; {self._good[name]} is used")
        self.query_one("#field-error", Static).update("\n".join(problems))

    def applied(self, options: ChatOptions) -> ChatOptions:
        """`options` with what the controls show, for the next turn; a field that does not validate keeps its
        last good value."""
        switch = self.query_one("#think", Switch)
        values: dict[str, Any] = {} if switch.disabled else {
            "think": switch.value, "reasoning_budget": self.query_one("#budget", Slider).value}
        return options.changed(**values, **self._good)


def _on_off(value: bool) -> str:
    return "on" if value else "off"
