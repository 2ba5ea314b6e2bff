"""`localai serve` through the official `openai` client: answers equal `localai run`'s, reasoning comes back
separated, the budget holds under every name clients use, usage counts are right, bad requests are the
client's own exceptions."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

QUESTION = [{"role": "user", "content": "Tell me about rivers."}]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gguf_model(package):
    return package("nemotron_h", "q8_0")


@pytest.fixture(scope="module")
def server(serve, gguf_model):
    return serve(str(gguf_model))


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def _name(folder) -> str:
    return json.loads((folder / "manifest.json").read_text())["name"]


@pytest.mark.parametrize("fmt", ["gguf", "onnx"])
def test_greedy_answer_equals_localai_run(fmt, serve, package, onnx_package, cli):
    folder = package("nemotron_h", "q8_0") if fmt == "gguf" else onnx_package("nemotron_h", "int8")
    run = cli("run", str(folder), "--prompt", QUESTION[0]["content"], "--temperature", "0", "--max-tokens", "24",
              "--think", "--json")
    assert run.code == 0, run.err
    expected = json.loads(run.out)
    client = openai.OpenAI(base_url=f"{serve(str(folder)).url}/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(model=_name(folder), messages=QUESTION, temperature=0, max_tokens=24,
                                            extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    message = answer.choices[0].message
    assert (message.content, message.reasoning_content or "") == (expected["content"], expected["reasoning"])
    assert answer.usage.completion_tokens == expected["usage"]["completion_tokens"]
    assert answer.usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert answer.usage.completion_tokens_details.reasoning_tokens == expected["usage"]["reasoning_tokens"]


def test_streamed_deltas_make_the_whole_answer_and_usage_comes_last(client, gguf_model):
    options = {"model": _name(gguf_model), "messages": QUESTION, "temperature": 0, "max_tokens": 30,
               "extra_body": {"chat_template_kwargs": {"enable_thinking": True}}}
    whole = client.chat.completions.create(**options)
    chunks = list(client.chat.completions.create(**options, stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert reasoning and reasoning == whole.choices[0].message.reasoning_content
    assert content == whole.choices[0].message.content
    assert not any(d.content and getattr(d, "reasoning_content", None) for d in deltas)  # never mixed
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason


@pytest.mark.parametrize("field", ["reasoning_budget", "thinking_token_budget", "thinking_budget_tokens",
                                   "nvext.max_thinking_tokens"])
def test_every_budget_name_caps_reasoning(client, gguf_model, field):
    budget, grace = 6, 8  # localai's default grace for small budgets: max(8, budget / 10)
    extra = {"nvext": {"max_thinking_tokens": budget}} if "." in field else {field: budget}
    answer = client.chat.completions.create(
        model=_name(gguf_model), messages=QUESTION, temperature=0, max_tokens=60,
        extra_body={**extra, "chat_template_kwargs": {"enable_thinking": True}})
    free = client.chat.completions.create(model=_name(gguf_model), messages=QUESTION, temperature=0, max_tokens=60,
                                          extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    assert free.usage.completion_tokens_details.reasoning_tokens > budget + grace  # the cap has work to do
    assert 0 < answer.usage.completion_tokens_details.reasoning_tokens <= budget + grace


@pytest.mark.parametrize("extra", [{"chat_template_kwargs": {"enable_thinking": False}}, {"reasoning_effort": "none"},
                                   {"reasoning_budget": 0}])
def test_thinking_off(client, gguf_model, extra):
    answer = client.chat.completions.create(model=_name(gguf_model), messages=QUESTION, temperature=0, max_tokens=12,
                                            extra_body=extra)
    assert answer.usage.completion_tokens_details.reasoning_tokens == 0
    assert not answer.choices[0].message.reasoning_content


def test_a_stop_string_ends_the_answer_before_it(client, gguf_model):
    options = {"model": _name(gguf_model), "messages": QUESTION, "temperature": 0, "max_tokens": 24,
               "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}
    full = client.chat.completions.create(**options).choices[0].message.content
    stop = full[len(full) // 2:][:3]
    assert stop.strip()
    stopped = client.chat.completions.create(**options, stop=[stop])
    assert stopped.choices[0].message.content == full[: full.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_a_20_turn_conversation_reuses_its_state_and_answers_as_without_reuse(client, gguf_model, serve):
    """From turn 2 on each turn processes only its new tokens (cached_tokens), and every answer is exactly
    the one a server with reuse off gives."""
    name = _name(gguf_model)
    options = {"model": name, "temperature": 0, "max_tokens": 16,
               "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}
    plain = openai.OpenAI(base_url=f"{serve(str(gguf_model), '--turn-snapshots', '0').url}/v1", api_key="x",
                          max_retries=0)
    history: list[dict[str, str]] = []
    for turn in range(20):
        history.append({"role": "user", "content": f"Question {turn + 1}: tell me about rivers."})
        reused = client.chat.completions.create(messages=history, **options)
        fresh = plain.chat.completions.create(messages=history, **options)
        cached = reused.usage.prompt_tokens_details.cached_tokens
        assert (cached > 0) == (turn > 0) and cached < reused.usage.prompt_tokens, turn
        assert fresh.usage.prompt_tokens_details.cached_tokens == 0
        assert reused.choices[0].message.content == fresh.choices[0].message.content, turn
        history.append({"role": "assistant", "content": reused.choices[0].message.content})


def test_completions_continue_raw_text(client, gguf_model):
    name = _name(gguf_model)
    whole = client.completions.create(model=name, prompt="1, 2, 3,", temperature=0, max_tokens=8)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=name, prompt="1, 2, 3,", temperature=0, max_tokens=8, stream=True) if c.choices)
    assert whole.usage.completion_tokens == 8 and whole.choices[0].finish_reason == "length"
    assert streamed == whole.choices[0].text


def test_models_lists_what_is_served(client, gguf_model):
    assert [m.id for m in client.models.list()] == [_name(gguf_model)]


@pytest.mark.parametrize(("request_", "error", "fragment"), [
    ({"model": "no-such-model"}, openai.NotFoundError, "not found; this server offers: nemotron-h-q8_0"),
    ({"n": 2}, openai.BadRequestError, "n must be 1"),
    ({"temperature": -1}, openai.BadRequestError, "temperature must be >= 0"),
    ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
    ({"messages": []}, openai.BadRequestError, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, openai.BadRequestError, "messages.0.role"),
    ({"extra_body": {"reasoning_budget": 5, "thinking_token_budget": 6}}, openai.BadRequestError,
     "the reasoning budget is given differently"),
    ({"extra_body": {"chat_template_kwargs": {"enable_thinking": "yes"}}}, openai.BadRequestError,
     "enable_thinking must be true or false"),
])
def test_bad_requests_are_the_clients_own_errors(client, gguf_model, request_, error, fragment):
    options = {"model": _name(gguf_model), "messages": QUESTION, "max_tokens": 4, **request_}
    with pytest.raises(error) as caught:
        client.chat.completions.create(**options)
    assert fragment in caught.value.message


def test_bodies_and_routes_that_are_refused(server):
    big = httpx.post(f"{server.url}/v1/chat/completions", content=b"{" + b" " * (5 * 1024 * 1024) + b"}",
                     headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and "over" in big.json()["error"]["message"]
    garbage = httpx.post(f"{server.url}/v1/chat/completions", content=b"\xff{not json", headers=JSON)
    assert garbage.status_code == 400 and garbage.json()["error"]["message"].startswith("the request body is not JSON")
    body = json.dumps({"model": "m", "messages": QUESTION})
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        page = httpx.post(f"{server.url}/api/chat", content=body, headers={"Content-Type": kind} if kind else {})
        assert page.status_code == 415 and "application/json" in page.json()["error"], kind
    missing = httpx.get(f"{server.url}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "no such endpoint: GET /v1/nothing"
    for response in (big, garbage, missing):
        assert "Traceback" not in response.text and "/tmp" not in response.text


def test_an_api_key_is_checked(serve, gguf_model):
    server = serve(str(gguf_model), "--api-key", "s3cret")
    for key in ("wrong", "s3cret"[:-1]):
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0).models.list()
    good = openai.OpenAI(base_url=f"{server.url}/v1", api_key="s3cret", max_retries=0)
    assert [m.id for m in good.models.list()] == [_name(gguf_model)]
    assert httpx.get(f"{server.url}/health").status_code == 200  # says only "up"
    assert httpx.get(f"{server.url}/api/tags").status_code == 401


def test_a_client_that_goes_away_cancels_its_generation(client, gguf_model, server):
    """The random model may end its turn at any token: a seed whose answer runs 300 tokens without ending is
    found first, so that the request can only end because the client left (not by itself just before)."""
    name = _name(gguf_model)
    no_think = {"chat_template_kwargs": {"enable_thinking": False}}
    seed = next(s for s in range(50) if client.chat.completions.create(
        model=name, messages=QUESTION, max_tokens=300, seed=s, temperature=1.0,
        extra_body=no_think).choices[0].finish_reason == "length")
    stream = client.chat.completions.create(model=name, messages=QUESTION, max_tokens=100_000, stream=True,
                                            seed=seed, temperature=1.0, extra_body=no_think)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    cancelled = f'localai_requests_total{{api="openai",finish="cancelled",model="{name}"}} 1.0'
    for _ in range(600):
        if cancelled in httpx.get(f"{server.url}/metrics").text:
            break
        httpx.get(f"{server.url}/health")  # wait a little without a timing assumption: a round trip each
    assert cancelled in httpx.get(f"{server.url}/metrics").text
    answer = client.chat.completions.create(model=name, messages=QUESTION, max_tokens=4)
    assert answer.usage.completion_tokens == 4  # the instance is free again


def test_a_prompt_too_long_for_the_context_is_a_400_even_when_streaming(client, gguf_model):
    with pytest.raises(openai.BadRequestError, match="context holds"):
        client.chat.completions.create(model=_name(gguf_model), stream=True, max_tokens=4,
                                       messages=[{"role": "user", "content": "rivers and towns " * 3000}])


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"model": "m", "seed": ' + b"1" * 5000 + b"}", "the request body is not JSON"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}', "not valid Unicode text"),
    (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
     "only text content parts are supported"),
])
def test_hostile_bodies_are_400s(server, body, fragment):
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body, headers=JSON)
    assert response.status_code == 400 and fragment in response.json()["error"]["message"], response.text


def test_one_model_can_be_retrieved(client, gguf_model):
    assert client.models.retrieve(_name(gguf_model)).id == _name(gguf_model)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
