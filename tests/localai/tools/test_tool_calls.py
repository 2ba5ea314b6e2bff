"""Tool calls on converted random models, llama.cpp and ONNX Runtime, in every family's format: forced calls
("required", a named tool) are always valid, a call the model opens by itself is written as the format
says, and a call -> result -> answer conversation goes back through the template."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from localai import schemas
from localai.errors import SettingError
from localai.model import Model
from localai.package import Package
from localai.tools.spec import tools_of
from tests.tool_templates import FAMILY_TEMPLATES

# every string and list bounded, so a random model's call ends within the token limit
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                         "days": {"type": "integer", "minimum": 1, "maximum": 7},
                                         "units": {"enum": ["c", "f"]}},
        "required": ["city", "units"]}}},
    {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"query": {"type": "string", "pattern": "^[a-z ]{1,12}$"},
                                         "exact": {"type": "boolean"},
                                         "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}},
        "required": ["query", "exact"]}}},
]
SEEDS = 10


@pytest.fixture
def base(nemotron3_model):
    return nemotron3_model


def _family(base: Model, family: str) -> Model:
    """The model with that family's template (the vocabulary and weights stay: the formats are text)."""
    manifest = dataclasses.replace(base.manifest, chat_template=FAMILY_TEMPLATES[family])
    return Model.bind(Package(base.package.root, manifest), base.backend)


def _valid_against_tools(call) -> bool:
    """Valid as the engine says, and as jsonschema says on its own."""
    tool = next((t for t in tools_of(TOOLS) if t.name == call.name), None)
    return call.valid and tool is not None and schemas.problem(json.loads(call.arguments), tool.parameters) is None


@pytest.mark.parametrize("family", list(FAMILY_TEMPLATES))
@pytest.mark.parametrize("choice", ["required", "lookup"])
def test_forced_calls_are_always_valid(base, family, choice):
    model = _family(base, family)
    for seed in range(SEEDS):
        final = model.chat([{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS, tool_choice=choice,
                           parallel_tool_calls=False, temperature=1.0, seed=seed, think=seed % 2 == 0,
                           reasoning_budget=8, max_tokens=300)
        assert final.finish_reason == "tool_calls", (seed, final)
        [call] = final.tool_calls
        assert _valid_against_tools(call) and (choice == "required" or call.name == choice), (seed, call)
        assert final.message()["tool_calls"][0]["function"] == {"name": call.name, "arguments": call.arguments}


def test_parallel_calls_are_bounded(base):
    model = _family(base, "hermes")
    for seed in range(5):
        final = model.chat([{"role": "user", "content": "hi"}], tools=TOOLS, tool_choice="required",
                           temperature=1.0, seed=seed, think=False, max_tokens=1200)
        assert 1 <= len(final.tool_calls) <= 8 and all(map(_valid_against_tools, final.tool_calls))


class _Opens:
    """Writes `text` (the model "decides" to call), then samples freely from whatever the engine allows."""

    def __init__(self, model: Model, text: str, seed: int) -> None:
        self.script = model.backend.tokenize(text, add_bos=False, special=True)
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, context) -> int:
        if self.script:
            return self.script.pop(0)
        p = np.exp(logits - logits.max())
        return int(self.rng.choice(p.size, p=p / p.sum()))


@pytest.mark.parametrize("family", ["nemotron_nano2", "nemotron3", "hermes"])
def test_a_call_the_model_opens_in_auto_mode_is_written_as_the_format_says(base, family):
    """In "auto" the answer is free until the model writes the format's opening; from there the call is
    constrained (the rest of the answer is free again)."""
    from localai.chat import chat

    model = _family(base, family)
    opening = {"nemotron_nano2": "<TOOLCALL>", "nemotron3": "<tool_call>", "hermes": "<tool_call>"}[family]
    opts = model.defaults.changed(tools=TOOLS, tool_choice="auto", parallel_tool_calls=False, think=False,
                                  max_tokens=300)
    for seed in range(SEEDS):
        events = list(chat(model.backend, model.format, [{"role": "user", "content": "hi"}], opts,
                           sampler=_Opens(model, f"Let me check.\n{opening}", seed)))
        final = events[-1]
        assert final.content.startswith("Let me check.") and final.tool_calls, (seed, final)
        assert _valid_against_tools(final.tool_calls[0]), (seed, final.tool_calls[0])


def test_without_the_opening_auto_leaves_the_answer_free(base):
    model = _family(base, "hermes")
    final = model.chat([{"role": "user", "content": "hi"}], tools=TOOLS, temperature=1.0, seed=1, think=False,
                       max_tokens=30)
    assert final.tool_calls == () and final.content


@pytest.mark.parametrize("family", list(FAMILY_TEMPLATES))
def test_call_result_answer_round_trip(base, family):
    model = _family(base, family)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = model.chat(messages, tools=TOOLS, tool_choice="get_weather", parallel_tool_calls=False,
                       temperature=0, think=False, max_tokens=200)
    [call] = first.tool_calls
    messages += [first.message(), {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    prompt = model.render(messages, tools=[t.to_openai() for t in tools_of(TOOLS)])
    assert '{"temp": 21}' in prompt and "get_weather" in prompt
    for key, value in json.loads(call.arguments).items():  # the call as the family writes past calls
        assert (str(value) if isinstance(value, str) else json.dumps(value)) in prompt.split("Weather in Paris?")[-1]
        assert key in prompt
    second = model.chat(messages, tools=TOOLS, tool_choice="none", temperature=0, think=False, max_tokens=20)
    question = model.chat(messages[:1], tools=TOOLS, tool_choice="none", temperature=0, think=False, max_tokens=1)
    assert second.tool_calls == () and second.usage.prompt_tokens > question.usage.prompt_tokens + 10


def test_tool_choice_none_tells_the_model_nothing(base):
    model = _family(base, "hermes")
    final = model.chat([{"role": "user", "content": "hi"}], tools=TOOLS, tool_choice="none", temperature=0,
                       think=False, max_tokens=5)
    plain = model.chat([{"role": "user", "content": "hi"}], temperature=0, think=False, max_tokens=5)
    assert final.usage.prompt_tokens == plain.usage.prompt_tokens and final.tool_calls == ()


def test_tools_with_a_json_answer_give_one_or_the_other(base):
    model = _family(base, "hermes")
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["n"], "additionalProperties": False}
    kinds = set()
    for seed in range(SEEDS):
        final = model.chat([{"role": "user", "content": "hi"}], tools=TOOLS, constraint=schema, temperature=1.0,
                           seed=seed, think=False, max_tokens=300)
        if final.tool_calls:
            assert all(map(_valid_against_tools, final.tool_calls)) and final.content == ""
            kinds.add("call")
        else:
            assert schemas.problem(json.loads(final.content), schema) is None
            kinds.add("json")
    assert kinds  # either, seed by seed


def test_a_template_without_tools_refuses_them_in_one_line(base):
    """The converted model's own template (Nemotron 3's conventions without tools) renders no tools."""
    with pytest.raises(SettingError, match="chat template takes no tools"):
        base.chat([{"role": "user", "content": "hi"}], tools=TOOLS)
    assert base.chat([{"role": "user", "content": "hi"}], tools=TOOLS, tool_choice="none", think=False,
                     max_tokens=2).usage.completion_tokens == 2


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"tool_choice": "fly"}, "names no tool"),
    ({"tool_choice": "required", "tools": []}, "needs tools"),
    ({"tools": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"pattern": "(?=x)"}}}}]},
     "look-around"),
])
def test_bad_tool_settings_are_one_line(base, changes, fragment):
    with pytest.raises(SettingError) as error:
        base.defaults.changed(**{"tools": TOOLS, **changes})
    assert fragment in str(error.value) and "\n" not in str(error.value)
