"""The models a server offers, loaded on first use and unloaded when idle.

Each model is loaded as `parallel` instances (a backend each, so that many requests generate at once);
a request leases one free instance, waiting in FIFO order when all are busy. At most `max_loaded`
models are in memory: loading another unloads the least recently used idle one. An instance idle for
`keep_alive` seconds is unloaded by `reap()`. Each instance keeps its own turn-state snapshots, so a
conversation that comes back processes only its new tokens (localai/turn_state.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from localai.errors import LocalAIError, describe
from localai.model import Model
from localai.package import Package

log = logging.getLogger("localai.server")


class UnknownModel(LookupError):
    """No model of that name is offered (the message lists the ones that are)."""


class LoadError(LocalAIError):
    """A model could not be loaded; the reason is in the server's log, not in the message (it may name
    paths on this machine)."""


@dataclass
class _Loaded:
    instances: list[Model]
    free: asyncio.Queue[Model]
    last_used: float
    busy: int = 0  # requests holding or waiting for an instance: never unloaded while above 0


@dataclass
class Catalog:
    """`packages` by name; `load(package)` makes one instance (blocking: it runs on a worker thread)."""

    packages: dict[str, Package]
    load: Callable[[Package], Model]
    parallel: int = 1
    max_loaded: int = 1
    keep_alive: float = 300.0
    _loaded: dict[str, _Loaded] = field(default_factory=dict)
    _load_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one load at a time: max_loaded holds
    _room: asyncio.Condition = field(default_factory=asyncio.Condition)

    def package(self, name: str) -> Package:
        if name not in self.packages:
            offered = ", ".join(sorted(self.packages)) or "none"
            raise UnknownModel(f"model {name!r} not found; this server offers: {offered}")
        return self.packages[name]

    def loaded(self) -> dict[str, tuple[Model, float]]:
        """Loaded models: name -> (an instance, when it will be unloaded if left idle)."""
        return {name: (entry.instances[0], entry.last_used + self.keep_alive) for name, entry in self._loaded.items()}

    @asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Model]:
        """An instance of model `name` for one request (loading the model first if it is not in memory)."""
        entry = await self._entry(name)  # counts this request, so the model is not unloaded under it
        try:
            model = await entry.free.get()
            try:
                yield model
            finally:
                entry.free.put_nowait(model)
        finally:
            await self._release(entry)

    async def ensure_loaded(self, name: str) -> None:
        """Load model `name` now unless it is in memory."""
        await self._release(await self._entry(name))

    async def _release(self, entry: _Loaded) -> None:
        entry.busy -= 1
        entry.last_used = time.monotonic()
        async with self._room:
            self._room.notify_all()

    async def _entry(self, name: str) -> _Loaded:
        package = self.package(name)
        if (entry := self._loaded.get(name)) is None:
            async with self._load_lock:
                if (entry := self._loaded.get(name)) is None:
                    await self._make_room()
                    instances = await self._instances(package)
                    free: asyncio.Queue[Model] = asyncio.Queue()
                    for model in instances:
                        free.put_nowait(model)
                    entry = self._loaded[name] = _Loaded(instances, free, time.monotonic())
        entry.busy += 1  # no await since the lookup: the entry is still loaded
        return entry

    async def _instances(self, package: Package) -> list[Model]:
        instances: list[Model] = []
        try:
            for _ in range(self.parallel):
                instances.append(await _shielded_load(self.load, package))
        except BaseException:
            for model in instances:
                model.close()
            raise
        return instances

    async def _make_room(self) -> None:
        """Unload the least recently used idle model until another fits (waits while all are busy)."""
        async with self._room:
            while len(self._loaded) >= self.max_loaded:
                idle = [(entry.last_used, name) for name, entry in self._loaded.items() if entry.busy == 0]
                if idle:
                    await self._unload(min(idle)[1])
                else:
                    await self._room.wait()

    async def reap(self) -> None:
        """Unload every model idle for longer than `keep_alive`."""
        now = time.monotonic()
        for name in [n for n, e in self._loaded.items() if e.busy == 0 and now - e.last_used > self.keep_alive]:
            await self._unload(name)

    async def _unload(self, name: str) -> None:
        """Unload `name` if it is still loaded and idle (checked and removed before any await)."""
        entry = self._loaded.get(name)
        if entry is None or entry.busy:
            return
        del self._loaded[name]
        for model in entry.instances:
            await asyncio.to_thread(model.close)

    async def close(self) -> None:
        """Unload everything (the server is stopping: its requests have ended or been cancelled)."""
        for name, entry in list(self._loaded.items()):
            entry.busy = 0
            await self._unload(name)


async def _shielded_load(load: Callable[[Package], Model], package: Package) -> Model:
    """`load(package)` on a worker thread. A request cancelled meanwhile does not orphan the model: it is
    closed once the load finishes. A failure is a LoadError; its reason goes to the log."""
    task = asyncio.ensure_future(asyncio.to_thread(load, package))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_close_result)
        raise
    except Exception as exc:
        log.error("cannot load %s: %s", package.manifest.name, describe(exc))
        raise LoadError(f"model {package.manifest.name!r} could not be loaded; the server's log says why") from exc


def _close_result(task: asyncio.Future[Model]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()
