"""Snapshots of the main screens (pytest-textual-snapshot; refresh with `pytest --snapshot-update`)."""

from __future__ import annotations

import pytest

from tests.tui.helpers import chat_screen, until
from tui.app import ChatApp
from tui.widgets.prompt import PromptInput

SIZE = (120, 36)


@pytest.fixture
def fixed_home(monkeypatch):
    # the picker shows the store's path: the same on every run, and never created (the store stays empty)
    monkeypatch.setenv("LOCALAI_HOME", "/nonexistent/localai-snapshot-home")


async def _loaded(pilot) -> None:
    screen = await chat_screen(pilot)
    screen.query_one(PromptInput).cursor_blink = False  # a blinking cursor would make two pictures
    # the "Loading" and the picker's "store is empty" toasts are gone: expired, and their widgets removed,
    # which happens a little later (a picture taken in between still shows one)
    await until(pilot, lambda: not pilot.app._notifications and not pilot.app.screen.query("Toast"), timeout=10)
    await pilot.pause()


def test_picker_with_an_empty_store(snap_compare, fixed_home, tmp_path):
    assert snap_compare(ChatApp(None, save_dir=tmp_path), terminal_size=SIZE)


def test_chat_screen(snap_compare, package, tmp_path):
    app = ChatApp(str(package("nemotron_h", "q8_0")), load_options={"n_ctx": 1024}, save_dir=tmp_path,
                  settings={"reasoning_budget": 256, "temperature": 0.6})
    assert snap_compare(app, terminal_size=SIZE, run_before=_loaded)


async def _help(pilot) -> None:
    await _loaded(pilot)
    await pilot.press("f1")


async def _bad_temperature(pilot) -> None:
    """Temp focused with an out-of-range value: the value stays readable and the reason is shown."""
    await _loaded(pilot)
    pilot.app.screen.query_one("#temperature").focus()
    await pilot.pause()
    await pilot.press("9")


async def _switch_focused(pilot) -> None:
    await _loaded(pilot)
    pilot.app.screen.query_one("#think").focus()
    await pilot.pause()


@pytest.mark.parametrize("size, steps", [(SIZE, _help), ((80, 24), _help), (SIZE, _bad_temperature),
                                         (SIZE, _switch_focused), ((80, 24), _loaded)],
                         ids=["help", "help-80x24", "focused-invalid-field", "focused-switch", "chat-80x24"])
def test_chat_app_states(snap_compare, package, tmp_path, size, steps):
    app = ChatApp(str(package("nemotron_h", "q8_0")), load_options={"n_ctx": 1024}, save_dir=tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=steps)
