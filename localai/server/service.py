"""What the API routers share: the catalog, the limits, the metrics, and one request's path from fields to
events: `turn()` checks it (404, 400); `stream()` leases an instance and has the first event made before
a response starts; `complete()` waits for the final event and gives up when the client has gone away."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from localai.errors import LocalAIError, SettingError
from localai.events import Event, Final
from localai.model import Model
from localai.options import ChatOptions, package_options
from localai.package import Package
from localai.server import stream
from localai.server.catalog import Catalog, LoadError, UnknownModel
from localai.server.fields import ApiError
from localai.server.metrics import Metrics

log = logging.getLogger("localai.server")
DISCONNECT_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 4 * 1024 * 1024
    max_messages: int = 2048


@dataclass(frozen=True)
class Turn:
    """One checked request: the model's name, its options, and either messages (chat) or raw text."""

    model: str
    api: str
    options: ChatOptions
    messages: list[dict[str, Any]] | None = None
    text: str | None = None

    def start(self, model: Model, cancel: threading.Event) -> Iterator[Event]:
        if self.messages is not None:
            return model.stream_chat(self.messages, self.options, cancel=cancel)
        return model.stream_complete(self.text or "", self.options, cancel=cancel)


def created_at(package: Package) -> datetime:
    """When the package was made, as its manifest says (the epoch when it does not: the clients parse it)."""
    try:
        made = datetime.fromisoformat(package.manifest.created)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return made if made.tzinfo else made.replace(tzinfo=UTC)


class Service:
    def __init__(self, catalog: Catalog, limits: Limits) -> None:
        self.catalog, self.limits = catalog, limits
        self.metrics = Metrics(lambda: len(catalog.loaded()))

    def names(self) -> list[str]:
        return sorted(self.catalog.packages)

    def check_messages(self, count: int) -> None:
        if count > self.limits.max_messages:
            raise ApiError(400, f"{count} messages is more than this server takes ({self.limits.max_messages})",
                           "messages")

    async def turn(self, name: str, changes: dict[str, Any], *, api: str, messages: list[dict[str, Any]] | None = None,
                   text: str | None = None) -> Turn:
        """The request checked against its model's name and defaults (404, 400)."""
        package = self.package(name)
        try:
            options = package_options(package.manifest.generation_defaults).changed(**changes)
        except SettingError as exc:
            raise ApiError(400, str(exc)) from None
        return Turn(name, api, options, messages, text)

    def package(self, name: str) -> Package:
        """The package served as `name`, or a 404 that lists the names served."""
        try:
            return self.catalog.package(name)
        except UnknownModel as exc:
            raise ApiError(404, str(exc), "model") from None

    async def load(self, name: str) -> None:
        """Load model `name` unless it is in memory (Ollama's empty-prompt request)."""
        try:
            await self.catalog.ensure_loaded(name)
        except LoadError as exc:
            raise ApiError(500, str(exc)) from None

    async def stream(self, turn: Turn) -> AsyncIterator[Event]:
        """The events of `turn`, the first one already made: a request that fails before its first event (the
        model cannot load, the prompt does not fit) is an HTTP error, not a broken stream."""
        events = self._events(turn)
        first = await anext(events)

        async def all_events() -> AsyncIterator[Event]:
            yield first
            async for event in events:
                yield event
        return all_events()

    async def _events(self, turn: Turn) -> AsyncIterator[Event]:
        self.metrics.waiting.inc()
        leased = False
        try:
            async with self.catalog.lease(turn.model) as model:
                self.metrics.waiting.dec()
                leased = True
                with self.metrics.running.track_inprogress():
                    async for event in stream.events(lambda cancel: self._recorded(turn, model, cancel)):
                        yield event
        except LoadError as exc:
            raise ApiError(500, str(exc)) from None
        except LocalAIError as exc:
            raise ApiError(400, str(exc)) from None
        except ApiError:
            raise
        except Exception:  # a bug: logged with its traceback; the client gets an error, not a cut connection
            log.exception("error generating for %s", turn.model)
            raise ApiError(500, "internal error; the server's log has the details") from None
        finally:
            if not leased:
                self.metrics.waiting.dec()

    def _recorded(self, turn: Turn, model: Model, cancel: threading.Event) -> Iterator[Event]:
        """`turn`'s events, its final one counted in the metrics (on the worker thread: a request whose
        client has gone away is counted too, as cancelled)."""
        for event in turn.start(model, cancel):
            if isinstance(event, Final):
                self.metrics.record(turn.model, turn.api, event)
            yield event

    async def complete(self, turn: Turn, request: Request) -> Final:
        """The final event of `turn`; generation stops (within a token) if the client disconnects."""
        task = asyncio.ensure_future(_last(self._events(turn)))
        while not task.done():
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                raise ApiError(499, "the client closed the connection")
        return task.result()


async def _last(events: AsyncIterator[Event]) -> Final:
    last: Event | None = None
    async for event in events:
        last = event
    if not isinstance(last, Final):
        raise ApiError(500, "the answer ended without a final event")
    return last
