"""`localai serve` through the official `ollama` client: list, chat with `think`, streaming, generate,
show, ps, version, and errors as `ollama.ResponseError` with the HTTP status."""

from __future__ import annotations

import json

import ollama
import pytest

QUESTION = [{"role": "user", "content": "Tell me about rivers."}]
GREEDY = {"temperature": 0, "num_predict": 30}


@pytest.fixture(scope="module")
def gguf_model(package):
    return package("nemotron_h", "q8_0")


@pytest.fixture(scope="module")
def name(gguf_model):
    return json.loads((gguf_model / "manifest.json").read_text())["name"]


@pytest.fixture(scope="module")
def client(serve, gguf_model):
    return ollama.Client(host=serve(str(gguf_model)).url)


def test_list_and_show(client, name):
    [listed] = client.list().models
    assert listed.model == name and listed.details.format == "gguf" and listed.size > 0
    shown = client.show(name)
    assert "thinking" in shown.capabilities and shown.template


def test_chat_with_thinking_separates_the_thought_and_streams_the_same(client, name):
    whole = client.chat(model=name, messages=QUESTION, think=True, options=GREEDY)
    assert whole.message.thinking and whole.done and whole.eval_count == 30
    parts = list(client.chat(model=name, messages=QUESTION, think=True, options=GREEDY, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == whole.message.thinking
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert not any(p.message.thinking and p.message.content for p in parts)
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done


def test_chat_without_thinking(client, name):
    answer = client.chat(model=name, messages=QUESTION, think=False, options=GREEDY)
    assert not answer.message.thinking and answer.message.content


def test_generate_answers_a_prompt_and_loads_on_an_empty_one(client, name):
    loaded = client.generate(model=name, prompt="")
    assert loaded.done and loaded.done_reason == "load"
    answer = client.generate(model=name, prompt="Tell me about rivers.", think=False, options=GREEDY)
    chat = client.chat(model=name, messages=QUESTION, think=False, options=GREEDY)
    assert answer.response == chat.message.content
    raw = client.generate(model=name, prompt="1, 2, 3,", raw=True, options={"temperature": 0, "num_predict": 5})
    assert raw.eval_count == 5


def test_ps_and_version(client, name):
    client.generate(model=name, prompt="")
    [running] = client.ps().models
    assert running.model == name and running.context_length > 0 and running.expires_at is not None
    assert client._client.get("/api/version").json()["version"]


@pytest.mark.parametrize(("call", "status", "fragment"), [
    (lambda c, n: c.chat(model="nope", messages=QUESTION), 404, "model 'nope' not found"),
    (lambda c, n: c.chat(model=n, messages=QUESTION, options={"temperature": -2}), 400, "temperature must be >= 0"),
    (lambda c, n: c.chat(model=n, messages=[{"role": "user", "content": "x", "images": [b"\x89PNG"]}]), 400,
     "images are not supported"),
    (lambda c, n: c.show("nope"), 404, "not found"),
])
def test_errors_are_response_errors_with_the_status(client, name, call, status, fragment):
    with pytest.raises(ollama.ResponseError) as caught:
        call(client, name)
    assert caught.value.status_code == status and fragment in caught.value.error


def test_ps_with_a_model_kept_forever(serve, gguf_model, name):
    client = ollama.Client(host=serve(str(gguf_model), "--keep-alive", "-1").url)
    client.generate(model=name, prompt="")
    [running] = client.ps().models
    assert running.expires_at.year > 2100
