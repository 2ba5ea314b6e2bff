from __future__ import annotations

import asyncio

import pytest
from textual.app import App, ComposeResult

from tui.widgets.slider import Slider


class SliderApp(App[None]):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.changes: list[int | None] = []

    def compose(self) -> ComposeResult:
        yield Slider(0, 100, step=10, id="s", **self.kwargs)

    def on_slider_changed(self, message: Slider.Changed) -> None:
        self.changes.append(message.value)


def _run(scenario, **kwargs):
    async def main():
        app = SliderApp(**kwargs)
        async with app.run_test(size=(40, 3)) as pilot:
            slider = app.query_one(Slider)
            slider.focus()
            await pilot.pause()
            await scenario(app, slider, pilot)
    asyncio.run(main())


def test_keys_move_by_step_page_and_to_the_ends():
    async def scenario(app, slider, pilot):
        await pilot.press("right", "right")
        assert slider.value == 20
        await pilot.press("left")
        assert slider.value == 10
        await pilot.press("pageup")  # ten steps: past the maximum is the "unlimited" position
        assert slider.value is None and slider.label() == "unlimited"
        await pilot.press("home")
        assert slider.value == 0
        await pilot.press("end")
        assert slider.value is None
        await pilot.press("left", "pagedown", "pagedown")
        assert slider.value == 0  # clamped
        assert app.changes == [10, 20, 10, None, 0, None, 100, 0]
    _run(scenario, value=0, unlimited=True)


def test_click_positions_and_drag_moves_the_knob():
    async def scenario(app, slider, pilot):
        track = slider._track_width()
        await pilot.click(Slider, offset=(track - 1, 0))
        assert slider.value == 100
        await pilot.click(Slider, offset=(0, 0))
        assert slider.value == 0
        await pilot.mouse_down(Slider, offset=(1, 0))
        await pilot.hover(Slider, offset=(track // 2, 0))
        await pilot.mouse_up(Slider, offset=(track // 2, 0))
        assert slider.value == 50
        assert app.mouse_captured is None
    _run(scenario, value=30)


def test_an_off_grid_start_value_is_kept_until_the_slider_moves():
    async def scenario(app, slider, pilot):
        assert slider.value == 7 and slider.label() == "7"
        await pilot.press("left")  # 7 sits at the nearest position (10): one step left is 0
        assert slider.value == 0 and app.changes == [0]
    _run(scenario, value=7)

    async def beyond(app, slider, pilot):
        assert slider.value == 5000
        await pilot.press("right")  # already at the far end: the grid's maximum now
        assert slider.value == 100 and app.changes == [100]
    _run(beyond, value=5000)


def test_value_setter_and_bad_ranges():
    slider = Slider(0, 100, step=10, value=30)
    slider.value = 37
    assert slider.value == 40
    slider.value = None
    assert slider.value == 0  # no "unlimited" position on this slider
    with pytest.raises(ValueError):
        Slider(0, 95, step=10)
