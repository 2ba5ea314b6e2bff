"""Property-based requests against a running `localai serve` (in place of a schema-driven fuzzer: the
server publishes no OpenAPI document): bodies built from each endpoint's own field names with values of
any JSON type, and plain junk. Every answer is below 500, JSON in the API's error shape when it is an
error, and says nothing about the machine."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIELDS = {
    "/v1/chat/completions": ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                             "top_k", "min_p", "seed", "stop", "n", "stream", "stream_options", "reasoning_effort",
                             "chat_template_kwargs", "reasoning_budget", "thinking_token_budget",
                             "thinking_budget_tokens", "nvext", "tools", "tool_choice", "parallel_tool_calls",
                             "response_format"],
    "/v1/completions": ["model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "stream", "n"],
    "/api/chat": ["model", "messages", "stream", "think", "options", "format", "tools", "tool_choice", "keep_alive"],
    "/api/generate": ["model", "prompt", "system", "raw", "stream", "think", "options", "images", "format"],
    "/api/show": ["model"],
}
JSON = {"Content-Type": "application/json"}
FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=40))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["role", "content", "type", "text", "include_usage", "enable_thinking", "num_predict",
                     "temperature", "max_thinking_tokens", "stop", "x", "function", "name", "parameters",
                     "properties", "json_schema", "schema", "arguments", "tool_calls", "tool_call_id", "pattern",
                     "enum", "maxLength"]), inner, max_size=4), max_leaves=12)


def _message(role: str | None = None) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", "x"])
                                  if role is None else st.just(role), "content": st.text(max_size=60) | values})


@st.composite
def bodies(draw: st.DrawFn, path: str, name: str) -> bytes:
    if draw(st.integers(0, 9)) == 0:  # plain junk
        return draw(st.binary(max_size=200))
    body = {field: draw(values) for field in draw(st.sets(st.sampled_from(FIELDS[path]), max_size=6))}
    if draw(st.booleans()):  # often a request that reaches generation
        body["model"] = name
        if "messages" in FIELDS[path]:
            body["messages"] = draw(st.lists(_message(), min_size=1, max_size=4) | values)
    return json.dumps(body, allow_nan=True).encode()


@pytest.fixture(scope="module")
def fuzzed(serve, package):
    folder = package("qwen3_tools", "q8_0")  # a template that renders tools, so tool fields reach the engine
    return serve(str(folder), "--ctx", "256"), json.loads((folder / "manifest.json").read_text())["name"]


@pytest.mark.parametrize("path", list(FIELDS))
def test_no_request_body_makes_a_server_error(fuzzed, path):
    server, name = fuzzed

    @FUZZ
    @given(body=bodies(path, name))
    def check(body: bytes) -> None:
        response = httpx.post(f"{server.url}{path}", content=body, headers=JSON, timeout=120)
        assert response.status_code < 500, (response.status_code, response.text[:300])
        if response.status_code >= 400:
            error = response.json()["error"]
            message = error["message"] if path.startswith("/v1") else error
            assert isinstance(message, str) and "Traceback" not in message and "/tmp/" not in message
        else:
            assert '"error"' not in response.text[-300:] or path == "/api/show", response.text[-300:]
    check()
