"""Driving the chat app with Textual's Pilot."""

from __future__ import annotations

import time

from textual.pilot import Pilot

from tui.screens.chat import ChatScreen
from tui.widgets.prompt import PromptInput


async def until(pilot: Pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


async def chat_screen(pilot: Pilot) -> ChatScreen:
    """Wait until the model is loaded and the prompt has focus."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ChatScreen) and isinstance(app.focused, PromptInput))
    return app.screen


async def type_text(pilot: Pilot, text: str) -> None:
    await pilot.press(*["space" if c == " " else c for c in text])


async def send(pilot: Pilot, text: str, *, wait: bool = True) -> ChatScreen:
    screen = await chat_screen(pilot)
    turns = len(screen.metrics)
    await type_text(pilot, text)
    await pilot.press("enter")
    if wait:
        await until(pilot, lambda: not screen.busy and len(screen.metrics) > turns)
    return screen
