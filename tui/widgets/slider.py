"""A focusable slider: keys, click-to-position and drag. Textual has none built in.

Values run from `minimum` to `maximum` in `step`s; with `unlimited`, one more position past the maximum
stands for "no limit" (value None). A starting value off that grid (a budget of 8 on a slider in steps
of 16, or beyond the maximum) is kept exactly, at the nearest position, until the slider is moved.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

PAGE = 10  # steps per PgUp / PgDn


class Slider(Widget, can_focus=True):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"slider--filled", "slider--knob", "slider--empty"}
    DEFAULT_CSS = """
    Slider { height: 1; width: 1fr; }
    Slider:focus { background: $accent 25%; }
    Slider:focus > .slider--knob { color: $accent; text-style: bold reverse; }
    Slider > .slider--filled { color: $accent; text-style: bold; }
    Slider > .slider--knob { color: $text; text-style: bold; }
    Slider > .slider--empty { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,minus", "move(-1)", "Less", show=False),
        Binding("right,plus", "move(1)", "More", show=False),
        Binding("pageup", f"move({PAGE})", show=False),
        Binding("pagedown", f"move(-{PAGE})", show=False),
        Binding("home", "jump(0)", show=False),
        Binding("end", "jump(-1)", show=False),
    ]

    position: reactive[int] = reactive(0)

    class Changed(Message):
        """The slider's value changed."""

        def __init__(self, slider: Slider, value: int | None) -> None:
            super().__init__()
            self.slider = slider
            self.value = value

        @property
        def control(self) -> Slider:
            return self.slider

    def __init__(self, minimum: int, maximum: int, *, step: int = 1, value: int | None = None,
                 unlimited: bool = False, name: str | None = None, id: str | None = None,
                 classes: str | None = None, disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        if maximum <= minimum or step <= 0 or (maximum - minimum) % step:
            raise ValueError("the range must hold a whole number of steps")
        self.minimum, self.maximum, self.step, self.unlimited = minimum, maximum, step, unlimited
        self._last = (maximum - minimum) // step + (1 if unlimited else 0)
        self._exact = value  # shown and returned until the slider moves
        self.set_reactive(Slider.position, self._position_of(value))

    @property
    def value(self) -> int | None:
        """The current value; None is "unlimited"."""
        if self._exact is not None:
            return self._exact
        if self.unlimited and self.position == self._last:
            return None
        return self.minimum + self.position * self.step

    @value.setter
    def value(self, value: int | None) -> None:
        self._move_to(self._position_of(value))

    def _move_to(self, position: int) -> None:
        before, previous = self.value, self.position
        self._exact = None
        self.position = position
        if self.position == previous and self.value != before:  # left an off-grid value without moving
            self.post_message(self.Changed(self, self.value))

    def _position_of(self, value: int | None) -> int:
        if value is None:
            return self._last if self.unlimited else 0
        return max(0, min((self.maximum - self.minimum) // self.step, round((value - self.minimum) / self.step)))

    def validate_position(self, position: int) -> int:
        return max(0, min(self._last, position))

    def watch_position(self, old: int, new: int) -> None:
        if old != new:
            self.post_message(self.Changed(self, self.value))

    def action_move(self, steps: int) -> None:
        self._move_to(self.validate_position(self.position + steps))

    def action_jump(self, where: int) -> None:
        self._move_to(self._last if where < 0 else 0)

    def label(self) -> str:
        return "unlimited" if self.value is None else str(self.value)

    def _track_width(self) -> int:
        return max(3, self.size.width - len(self._widest_label()) - 1)

    def _widest_label(self) -> str:
        return "unlimited" if self.unlimited else str(self.maximum)

    def render(self) -> Text:
        width = self._track_width()
        knob = round(self.position / self._last * (width - 1)) if self._last else 0
        text = Text()
        text.append("━" * knob, style=self.get_component_rich_style("slider--filled"))
        text.append("●", style=self.get_component_rich_style("slider--knob"))
        text.append("─" * (width - knob - 1), style=self.get_component_rich_style("slider--empty"))
        text.append(" " + self.label().rjust(len(self._widest_label())))
        return text

    def _position_at(self, x: int) -> int:
        width = self._track_width()
        return round(max(0, min(width - 1, x)) / max(1, width - 1) * self._last)

    def on_mouse_down(self, event: events.MouseDown) -> None:
        self.focus()
        self.capture_mouse()
        self._move_to(self._position_at(event.x))

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self.app.mouse_captured is self:
            self._move_to(self._position_at(event.x))

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if self.app.mouse_captured is self:
            self.release_mouse()
