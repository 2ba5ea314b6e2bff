"""Models in a server's memory: loaded once on first use, at most `max_loaded`, the least recently used
idle one unloaded first, idle ones unloaded after `keep_alive`; `parallel` instances generate at once."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

import localai
from localai.model import resolve
from localai.server.catalog import Catalog, UnknownModel


@pytest.fixture(scope="module")
def two(package):
    return {p.manifest.name: p for p in (resolve(package("nemotron_h", "q8_0")), resolve(package("llama", "q8_0")))}


def _catalog(packages, **options):
    loads = []

    def load(package):
        loads.append(package.manifest.name)
        return localai.load(package, n_ctx=256)
    return Catalog(packages, load, **options), loads


def test_one_load_however_many_requests_arrive_at_once(two):
    catalog, loads = _catalog(two, parallel=2)
    name = sorted(two)[0]

    async def scenario():
        async def use():
            async with catalog.lease(name) as model:
                return model
        models = await asyncio.gather(*(use() for _ in range(6)))
        await catalog.close()
        return models
    models = asyncio.run(scenario())
    assert loads == [name, name] and len({id(m) for m in models}) == 2  # two instances, shared by six requests


def test_the_least_recently_used_idle_model_makes_room(two):
    catalog, loads = _catalog(two, max_loaded=1)
    first, second = sorted(two)

    async def scenario():
        async with catalog.lease(first) as model:
            held = model
        async with catalog.lease(second):
            loaded = set(catalog.loaded())
        await catalog.close()
        return held, loaded
    held, loaded = asyncio.run(scenario())
    assert loaded == {second} and loads == [first, second]
    with pytest.raises(localai.LocalAIError, match="closed"):
        held.backend.eval([1])


def test_idle_models_are_reaped_after_keep_alive_and_busy_ones_never(two):
    catalog, _ = _catalog(two, max_loaded=2, keep_alive=0.0)
    first, second = sorted(two)

    async def scenario():
        async with catalog.lease(first):
            async with catalog.lease(second):
                pass
            await asyncio.sleep(0.01)
            await catalog.reap()
            during = set(catalog.loaded())
        await asyncio.sleep(0.01)
        await catalog.reap()
        return during, set(catalog.loaded())
    during, after = asyncio.run(scenario())
    assert during == {first} and after == set()


def test_an_unknown_name_lists_what_is_offered(two):
    catalog, _ = _catalog(two)
    with pytest.raises(UnknownModel, match="this server offers: llama-q8_0, nemotron-h-q8_0"):
        catalog.package("nope")


def test_parallel_instances_answer_two_streams_at_once(serve, package):
    """With --parallel 2 a second stream starts while the first is still open; with one instance it would
    wait for the first to end, which this test never lets happen (the client's timeout would fail it)."""
    folder = package("nemotron_h", "q8_0")
    server = serve(str(folder), "--parallel", "2")
    body = {"model": json.loads((folder / "manifest.json").read_text())["name"], "stream": True,
            "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    url = f"{server.url}/v1/chat/completions"
    with httpx.Client(timeout=60) as client, client.stream("POST", url, json=body) as one:
        first = one.iter_lines()
        assert next(first).startswith("data: ")
        with client.stream("POST", url, json=body) as two_:
            lines = [line for line in two_.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        assert [line for line in first if line][-1] == "data: [DONE]"


def test_concurrent_requests_for_other_models_never_exceed_max_loaded(two):
    seen = []
    catalog, _ = _catalog(two, max_loaded=1)
    load = catalog.load

    def counting_load(package):
        seen.append(len(catalog._loaded))  # models in memory when another starts loading
        return load(package)
    catalog.load = counting_load
    first, second = sorted(two)

    async def scenario():
        async def use(name):
            async with catalog.lease(name):
                await asyncio.sleep(0.01)
        await asyncio.gather(*(use(name) for name in (first, second, first, second, second, first)))
        await catalog.close()
    asyncio.run(scenario())
    assert seen and max(seen) == 0


def test_a_request_cancelled_while_its_model_loads_does_not_orphan_the_model(two):
    import threading

    loaded, release = [], threading.Event()
    name = sorted(two)[0]

    def slow_load(package):
        release.wait(30)
        model = localai.load(package, n_ctx=256)
        loaded.append(model)
        return model
    catalog = Catalog(two, slow_load)

    async def scenario():
        task = asyncio.create_task(catalog.ensure_loaded(name))
        await asyncio.sleep(0.05)
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(300):  # the load finishes on its thread; then its model is closed
            if loaded:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
    asyncio.run(scenario())
    assert len(loaded) == 1 and name not in catalog.loaded()
    with pytest.raises(localai.LocalAIError, match="closed"):
        loaded[0].backend.eval([1])


def test_many_concurrent_clients_all_get_complete_answers(serve, package):
    """A bounded load test: 12 clients x 3 streamed requests on 2 instances; none lost, none cut short, and
    the metrics count every one."""
    import threading

    import openai

    folder = package("nemotron_h", "q8_0")
    name = json.loads((folder / "manifest.json").read_text())["name"]
    server = serve(str(folder), "--parallel", "2", "--ctx", "512")
    finished, problems = [], []

    def client(i: int) -> None:
        api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
        for j in range(3):
            try:
                chunks = list(api.chat.completions.create(
                    model=name, messages=[{"role": "user", "content": f"client {i} question {j}"}], max_tokens=12,
                    temperature=0, stream=True, stream_options={"include_usage": True},
                    extra_body={"reasoning_effort": "none"}))
                finished.append((chunks[-1].usage.completion_tokens, chunks[-2].choices[0].finish_reason))
            except Exception as exc:  # collected, so that one failure does not hide the others
                problems.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert problems == [] and len(finished) == 36
    assert all(finish in ("length", "stop") and 0 < tokens <= 12 for tokens, finish in finished)
    metrics = httpx.get(f"{server.url}/metrics").text
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("localai_requests_total{"))
    assert counted == 36
    assert "localai_requests_waiting 0.0" in metrics and "localai_requests_running 0.0" in metrics
