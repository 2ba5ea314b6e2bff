"""One generation on a worker thread, its events handed to the event loop as they come.

The chat engine is synchronous (a backend call per token), so each request runs it on a thread of the
loop's executor. Leaving the iteration early (the client went away, the server is shutting down) sets
the engine's cancel event, and the iteration waits for the thread to stop, within one token, before it
ends: the instance is idle again when its lease is returned. (The engine checks the event between
tokens: a prompt that is being processed is finished first.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import anyio

from localai.events import Event

_DONE = object()


async def events(start: Callable[[threading.Event], Iterator[Event]]) -> AsyncIterator[Event]:
    """The events of `start(cancel)`, run on a worker thread; an exception it raises is raised here."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    cancel = threading.Event()

    def hand_over(item: object) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            cancel.set()

    def work() -> None:
        try:
            for event in start(cancel):
                hand_over(event)
        except Exception as exc:
            hand_over(exc)
        finally:
            hand_over(_DONE)

    worker = loop.run_in_executor(None, work)
    try:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]
    finally:
        cancel.set()
        with anyio.CancelScope(shield=True):  # however often the request is cancelled, the thread ends first
            await worker

