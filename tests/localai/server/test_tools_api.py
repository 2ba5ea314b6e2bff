"""Tool calls and structured output through `localai serve`, with the official `openai` and `ollama` clients:
calls come back as each API writes them (whole or streamed), a call -> result -> answer conversation goes
back through the template, schemas constrain the answer, and bad schemas or tools are 400s."""

from __future__ import annotations

import json

import httpx
import ollama
import openai
import pytest

from localai import schemas

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                         "units": {"enum": ["c", "f"]}},
        "required": ["city", "units"]}}},
    {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"query": {"type": "string", "pattern": "^[a-z]{1,8}$"}},
        "required": ["query"]}}},
]
ANSWER = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]},
                                           "temp": {"type": "integer", "minimum": -50, "maximum": 50}},
          "required": ["city", "temp"], "additionalProperties": False}
QUESTION = [{"role": "user", "content": "Weather in Paris?"}]
NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}  # a random model's thought need not end


@pytest.fixture(scope="module")
def tools_model(package):
    return package("qwen3_tools", "q8_0")


@pytest.fixture(scope="module")
def name(tools_model):
    return json.loads((tools_model / "manifest.json").read_text())["name"]


@pytest.fixture(scope="module")
def server(serve, tools_model, package):
    return serve(str(tools_model), str(package("nemotron_h", "q8_0")))


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def _arguments_valid(name: str, arguments: dict) -> bool:
    tool = next(t["function"] for t in TOOLS if t["function"]["name"] == name)
    return schemas.problem(arguments, tool["parameters"]) is None


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "lookup"}}])
def test_forced_calls_come_back_as_tool_calls(client, name, choice):
    for seed in range(5):
        answer = client.chat.completions.create(model=name, messages=QUESTION, tools=TOOLS, tool_choice=choice,
                                                parallel_tool_calls=False, temperature=1.0, seed=seed, max_tokens=200,
                                                extra_body=NO_THINK)
        [result] = answer.choices
        assert result.finish_reason == "tool_calls" and not result.message.content
        [call] = result.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_")
        assert _arguments_valid(call.function.name, json.loads(call.function.arguments))
        assert isinstance(choice, str) or call.function.name == "lookup"


def test_streamed_calls_are_the_same_calls(client, name):
    options = {"model": name, "messages": QUESTION, "tools": TOOLS, "tool_choice": "required", "temperature": 0,
               "max_tokens": 400, "extra_body": NO_THINK}
    whole = client.chat.completions.create(**options)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(**options, stream=True):
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(delta_call.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += delta_call.id or ""
            slot["name"] += delta_call.function.name or ""
            slot["arguments"] += delta_call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    expected = [(c.function.name, json.loads(c.function.arguments)) for c in whole.choices[0].message.tool_calls]
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == expected
    assert finish == "tool_calls" and all(c["id"] for c in calls.values())


def test_call_result_answer_round_trip(client, name):
    first = client.chat.completions.create(model=name, messages=QUESTION, tools=TOOLS, tool_choice="required",
                                           parallel_tool_calls=False, temperature=0, max_tokens=200,
                                           extra_body=NO_THINK)
    message = first.choices[0].message
    messages = [*QUESTION, message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": '{"temp": 21}'}]
    second = client.chat.completions.create(model=name, messages=messages, tools=TOOLS, tool_choice="none",
                                            temperature=0, max_tokens=10)
    question = client.chat.completions.create(model=name, messages=QUESTION, tools=TOOLS, tool_choice="none",
                                              temperature=0, max_tokens=1)
    assert second.choices[0].message.content is not None and not second.choices[0].message.tool_calls
    assert second.usage.prompt_tokens > question.usage.prompt_tokens + 10  # the call and its result


def test_json_schema_and_json_object_response_formats(client, name):
    schema_format = {"type": "json_schema", "json_schema": {"name": "weather", "schema": ANSWER, "strict": True}}
    for seed in range(5):
        answer = client.chat.completions.create(model=name, messages=QUESTION, response_format=schema_format,
                                                temperature=1.0, seed=seed, max_tokens=100, extra_body=NO_THINK)
        assert schemas.problem(json.loads(answer.choices[0].message.content), ANSWER) is None
    streamed = client.chat.completions.create(model=name, messages=QUESTION, response_format=schema_format,
                                              temperature=0, max_tokens=100, stream=True, extra_body=NO_THINK)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert schemas.problem(json.loads(text), ANSWER) is None
    free = client.chat.completions.create(model=name, messages=QUESTION, response_format={"type": "json_object"},
                                          temperature=0, max_tokens=100, extra_body=NO_THINK)
    assert free.choices[0].message.content.startswith("{")


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}},
     "not a valid JSON Schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"uniqueItems": True}}}},
     "Unimplemented keys"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]}, "type object"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "fly"}}}, "names no tool"),
    ({"tools": TOOLS, "tool_choice": {"type": "nope"}}, "tool_choice must be"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]}, "JSON object"),
])
def test_bad_schemas_and_tools_are_400s(client, name, extra, fragment):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(**{"model": name, "messages": QUESTION, "max_tokens": 5, **extra})
    assert fragment in error.value.body["message"]


def test_a_model_whose_template_takes_no_tools_is_a_400(client, package):
    plain = json.loads((package("nemotron_h", "q8_0") / "manifest.json").read_text())["name"]
    with pytest.raises(openai.BadRequestError, match="takes no tools"):
        client.chat.completions.create(model=plain, messages=QUESTION, tools=TOOLS, max_tokens=5)


def test_ollama_format_schema_and_tool_results(server, name):
    client = ollama.Client(host=server.url)
    for seed in range(3):
        answer = client.chat(model=name, messages=QUESTION, format=ANSWER, think=False,
                             options={"temperature": 1.0, "seed": seed, "num_predict": 100})
        assert schemas.problem(json.loads(answer.message.content), ANSWER) is None
    assert "tools" in client.show(name).capabilities
    history = [*QUESTION, ollama.Message(role="assistant", content="", tool_calls=[ollama.Message.ToolCall(
        function=ollama.Message.ToolCall.Function(name="get_weather", arguments={"city": "Paris", "units": "c"}))]),
               {"role": "tool", "tool_name": "get_weather", "content": '{"temp": 21}'}]
    answer = client.chat(model=name, messages=history, tools=TOOLS, options={"temperature": 0, "num_predict": 5})
    assert answer.done and answer.prompt_eval_count > 0


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_tool_calls_with_localai_tool_choice(server, name, stream):
    """Ollama's API cannot force a call; localai's `tool_choice` extension can. The replies parse as the
    ollama client's own types."""
    body = {"model": name, "messages": QUESTION, "tools": TOOLS, "tool_choice": "get_weather", "stream": stream,
            "think": False, "options": {"temperature": 0, "num_predict": 200}}
    with httpx.stream("POST", f"{server.url}/api/chat", json=body, timeout=60) as response:
        chunks = [ollama.ChatResponse.model_validate(json.loads(line)) for line in response.iter_lines() if line]
    calls = [call for chunk in chunks for call in chunk.message.tool_calls or []]
    assert calls and all(call.function.name == "get_weather" for call in calls)
    assert all(_arguments_valid("get_weather", dict(call.function.arguments)) for call in calls)
    assert chunks[-1].done and chunks[-1].done_reason == "stop"


def test_an_invalid_call_stays_text_and_says_why(client, name):
    """`uniqueItems` is left to validation (the grammar cannot enforce it): a call with the same item twice
    is reported invalid, its text in `content`, never in `tool_calls`."""
    pick = [{"type": "function", "function": {"name": "pick", "parameters": {"type": "object", "properties": {
        "two": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2, "maxItems": 2, "uniqueItems": True}},
        "required": ["two"]}}}]
    seen = {"valid": 0, "invalid": 0}
    for seed in range(12):
        message = client.chat.completions.create(model=name, messages=QUESTION, tools=pick, tool_choice="required",
                                                 parallel_tool_calls=False, temperature=1.0, seed=seed,
                                                 max_tokens=100, extra_body=NO_THINK).choices[0].message
        invalid = (message.model_extra or {}).get("invalid_tool_calls")
        if invalid:
            [call] = invalid
            assert not message.tool_calls and "non-unique" in call["error"] and call["name"] == "pick"
            assert "<tool_call>" in message.content and call["arguments"] in message.content
            seen["invalid"] += 1
        else:
            assert len(set(json.loads(message.tool_calls[0].function.arguments)["two"])) == 2
            seen["valid"] += 1
    assert seen["valid"] and seen["invalid"]
