"""The control panel shows every value in every state: focused, unfocused and invalid (no model needed)."""

from __future__ import annotations

import asyncio

import pytest
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Input, Label, Static, Switch

from localai.options import ChatOptions
from localai.sampling import SamplingParams
from tui.widgets.controls import ControlPanel
from tui.widgets.slider import Slider

VALUES = {"temperature": "0.7", "top_p": "0.95", "max_tokens": "256"}


class PanelApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ControlPanel(ChatOptions(max_tokens=256, sampling=SamplingParams(temperature=0.7, top_p=0.95)))


def drawn(widget: Widget) -> list[str]:
    """The widget's lines as the screen draws them, border and padding included."""
    lines = widget.render_lines(Region(0, 0, widget.outer_size.width, widget.outer_size.height))
    return [line.text for line in lines]


def knob_cells(switch: Switch) -> list[int]:
    """Columns of the switch drawn in its slider (knob) style."""
    [line] = switch.render_lines(Region(0, 0, switch.outer_size.width, 1))
    cells, x = [], 0
    for segment in line:
        if segment.style and segment.style.reverse:
            cells += range(x, x + len(segment.text))
        x += len(segment.text)
    return cells


@pytest.mark.parametrize("name", list(VALUES))
def test_a_field_shows_its_value_focused_and_unfocused(name):
    async def scenario():
        async with PanelApp().run_test(size=(46, 30)) as pilot:
            field = pilot.app.query_one(f"#{name}", Input)
            for focused in (False, True):
                if focused:
                    field.focus()
                    await pilot.pause()
                assert drawn(field) == [VALUES[name].ljust(field.outer_size.width)], (name, focused)
    asyncio.run(scenario())


def test_an_invalid_value_stays_readable_says_why_and_the_last_good_value_is_used():
    async def scenario():
        async with PanelApp().run_test(size=(46, 30)) as pilot:
            panel = pilot.app.query_one(ControlPanel)
            field = pilot.app.query_one("#temperature", Input)
            field.focus()
            await pilot.pause()
            await pilot.press("9")  # focus selected the old value: typing replaces it
            assert field.has_class("-invalid")
            assert drawn(field)[0].strip() == "9"
            error = str(pilot.app.query_one("#field-error", Static).content)
            assert error == "Temp: must be between 0 and 5; 0.7 is used"
            assert panel.applied(ChatOptions()).sampling.temperature == 0.7
            await pilot.press("backspace", "1", ".", "5")
            assert drawn(field)[0].strip() == "1.5" and panel.applied(ChatOptions()).sampling.temperature == 1.5
            assert str(pilot.app.query_one("#field-error", Static).content) == ""
    asyncio.run(scenario())


def test_the_thinking_switch_shows_its_knob_and_state_focused_and_unfocused():
    async def scenario():
        async with PanelApp().run_test(size=(46, 30)) as pilot:
            switch = pilot.app.query_one("#think", Switch)
            state = pilot.app.query_one("#think-state", Label)
            for focused in (False, True):
                if focused:
                    switch.focus()
                    await pilot.pause()
                for value in (True, False):
                    switch.value = value
                    await pilot.pause(0.5)  # the knob slides
                    assert switch.outer_size.height == 1
                    half = switch.outer_size.width // 2
                    assert knob_cells(switch) == list(range(half, 2 * half) if value else range(half))
                    assert str(state.content) == ("on" if value else "off")
            await pilot.press("space")
            assert switch.value and str(state.content) == "on"
    asyncio.run(scenario())


def test_focus_is_visible_on_every_control():
    async def scenario():
        async with PanelApp().run_test(size=(46, 30)) as pilot:
            app = pilot.app
            labels = {str(label.content): label for label in app.query(Label)}
            rows = {"#think": labels["Thinking"], "#temperature": labels["Temp"], "#budget": labels["Reasoning budget"]}
            for target, label in rows.items():
                app.set_focus(None)
                await pilot.pause()
                before = label.rich_style
                app.query_one(target).focus()
                await pilot.pause()
                assert label.rich_style != before, target
            slider = app.query_one("#budget", Slider)
            app.set_focus(None)
            await pilot.pause()
            blurred = slider.rich_style
            slider.focus()
            await pilot.pause()
            assert slider.rich_style != blurred
    asyncio.run(scenario())
