"""Each family's tool-call format: its template renders tools, past calls and tool results as transformers
renders them, the format is found from the template, and its parser turns well-formed, malformed and
partial output into the right events however the text is split into tokens."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localai import chat_template, tools
from localai.events import ContentDelta, Final, Timings, ToolCall, Usage
from localai.tools.calls import with_tool_calls
from localai.tools.spec import ToolError, for_template, tools_of
from tests.tool_templates import FAMILY_TEMPLATES

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                                    "units": {"enum": ["c", "f"]}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"},
                                                                        "options": {"type": "object"}}}}}
TOOLS = tools_of([WEATHER, CLOCK])

# what each family's model writes for two calls (Llama 3: one call per answer)
CALLS = {
    "nemotron_nano2": '<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}, '
                      '{"name": "get_time", "arguments": {"tz": "CET", "options": {"a": [1, true]}}}]</TOOLCALL>',
    "nemotron3": "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n"
                 "</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_time>\n<parameter=tz>\nCET\n"
                 '</parameter>\n<parameter=options>\n{"a": [1, true]}\n</parameter>\n</function>\n</tool_call>',
    "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>\n'
              '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET", "options": {"a": [1, true]}}}\n'
              '</tool_call>',
    "llama3": '{"name": "get_weather", "parameters": {"city": "Paris", "days": 2}}',
}
PARSED = [("get_weather", {"city": "Paris", "days": 2}), ("get_time", {"tz": "CET", "options": {"a": [1, True]}})]


def _conversation(family: str) -> list[dict]:
    """A conversation in OpenAI's shape (arguments as JSON text): a call answered by tool results."""
    calls = [{"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
             for i, (name, arguments) in enumerate(PARSED[: 1 if family == "llama3" else 2])]
    results = [{"role": "tool", "tool_call_id": call["id"], "content": text}
               for call, text in zip(calls, ['{"temp": 21}', "14:05"], strict=False)]
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": "Let me look.", "tool_calls": calls}, *results]


@pytest.mark.parametrize("family", list(FAMILY_TEMPLATES))
def test_the_template_renders_tools_calls_and_results_as_transformers_does(family):
    """transformers takes call arguments as objects; localai takes OpenAI's JSON text and gives templates
    objects: the same prompt either way."""
    from transformers import PreTrainedTokenizerFast

    from localai.demo_model import train_tokenizer

    template = FAMILY_TEMPLATES[family]
    messages = _conversation(family)
    ours = chat_template.render(template, for_template(messages), tools=[t.to_openai() for t in TOOLS],
                                bos_token="<s>", eos_token="<|end|>")
    as_objects = json.loads(json.dumps(messages))
    for message in as_objects:
        for call in message.get("tool_calls", []):
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(300), bos_token="<s>", eos_token="<|end|>")
    theirs = tokenizer.apply_chat_template(as_objects, tools=[WEATHER, CLOCK], chat_template=template, tokenize=False,
                                           add_generation_prompt=True)
    assert ours == theirs
    assert "The weather in a city." in ours and '{"temp": 21}' in ours  # the tool and its result
    assert tools.detect(template).name == family


def test_templates_without_tools_have_no_format():
    assert tools.detect(None) is None
    assert tools.detect("{% for m in messages %}{{ m['content'] }}{% endfor %}") is None


def _events(text: str, cuts: list[int], finish: str = "stop") -> list:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [ContentDelta(text[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    return [*pieces, Final(text, "", finish, Usage(1, 0, 1), Timings(None, None, None, 1.0))]


def _read(family: str, text: str, cuts: list[int] = (), finish: str = "stop") -> tuple[Final, list]:
    events = list(with_tool_calls(iter(_events(text, list(cuts), finish)), tools.tool_format(family), TOOLS))
    final = events[-1]
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)) == final.content
    assert [e for e in events if isinstance(e, ToolCall)] == list(final.tool_calls)
    return final, events


@pytest.mark.parametrize("family", list(CALLS))
@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_calls_are_read_however_the_text_arrives(family, cuts):
    final, _ = _read(family, CALLS[family], cuts)
    expected = PARSED[: 1 if family == "llama3" else 2]
    assert [(c.name, json.loads(c.arguments)) for c in final.tool_calls] == expected
    assert all(c.valid for c in final.tool_calls) and final.finish_reason == "tool_calls"
    assert final.content == "" and len({c.id for c in final.tool_calls}) == len(expected)


@pytest.mark.parametrize("family", ["nemotron_nano2", "nemotron3", "hermes"])
def test_text_around_calls_is_content(family):
    final, events = _read(family, f"Let me check.\n\n{CALLS[family]}\nDone.", [3, 20, 41])
    assert final.content == "Let me check.\n\nDone." and len(final.tool_calls) == 2
    kinds = [type(e).__name__ for e in events if not isinstance(e, Final)]
    assert kinds.index("ToolCall") > kinds.index("ContentDelta")  # the text before the call streams first


@pytest.mark.parametrize(("family", "text", "fragment"), [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": 3}}\n</tool_call>', "not of type 'string'"),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"days": 2}}\n</tool_call>', "'city' is a required"),
    ("hermes", "<tool_call>\n{name: get_weather}\n</tool_call>", "not JSON"),
    ("hermes", '<tool_call>\n["get_weather"]\n</tool_call>', 'with a "name"'),
    ("hermes", '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>', "not one of the tools"),
    ("nemotron_nano2", '<TOOLCALL>[{"name": "get_weather", "arguments": "{\\"city\\": 1}"}]</TOOLCALL>',
     "not of type 'string'"),
    ("nemotron_nano2", "<TOOLCALL>[]</TOOLCALL>", "empty list"),
    ("nemotron3", "<tool_call>\n<function=get_weather>\n<parameter=days>\ntwo\n</parameter>\n</function>\n"
                  "</tool_call>", "'city' is a required"),
    ("nemotron3", "<tool_call>\n<parameter=city>\nParis\n</parameter>\n</tool_call>", "no complete <function"),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}, }', "not JSON"),
])
def test_a_malformed_call_is_reported_invalid_never_passed_on(family, text, fragment):
    final, _ = _read(family, text)
    [call] = final.tool_calls
    assert not call.valid and fragment in call.error and "\n" not in call.error
    assert final.finish_reason == "stop" and call.text.strip() == text.strip()
    assert final.message() == {"role": "assistant", "content": ""}  # no call to answer


@pytest.mark.parametrize("family", list(CALLS))
def test_a_call_cut_off_by_the_token_limit_is_invalid(family):
    text = CALLS[family][: len(CALLS[family]) * 3 // 4]
    final, _ = _read(family, text, [7], finish="length")
    *whole, cut = final.tool_calls
    assert final.finish_reason == "length" and "cut off" in cut.error
    assert all(call.valid for call in whole)  # the calls before it were complete


def test_the_python_form_of_booleans_and_none_in_xml_values():
    tools_ = tools_of([{"name": "f", "parameters": {"type": "object", "properties": {
        "flag": {"type": "boolean"}, "note": {"type": ["string", "null"]}, "n": {"type": "number"}}}}])
    text = ("<tool_call>\n<function=f>\n<parameter=flag>\nTrue\n</parameter>\n<parameter=note>\nNone\n</parameter>\n"
            "<parameter=n>\n2.5\n</parameter>\n</function>\n</tool_call>")
    events = list(with_tool_calls(iter(_events(text, [])), tools.tool_format("nemotron3"), tools_))
    [call] = events[-1].tool_calls
    assert call.valid and json.loads(call.arguments) == {"flag": True, "note": None, "n": 2.5}


def test_text_that_only_looks_like_a_call_is_content():
    for family, text in (("llama3", "Hello {braces} are fine"), ("nemotron_nano2", "a <TOOLCALL without end"),
                         ("hermes", "<tool_cal is not the tag")):
        final, _ = _read(family, text, [2, 9])
        assert final.tool_calls == () and final.finish_reason == "stop" and final.content == text
    # the opening markup itself is a call the model began: reported, as invalid
    final, _ = _read("hermes", "Use <tool_call> tags, say", [4])
    assert final.content == "Use" and "not JSON" in final.tool_calls[0].error


@pytest.mark.parametrize(("definitions", "fragment"), [
    ([{"type": "retrieval"}], "only function tools"),
    ([{"name": "bad name"}], "letters, digits"),
    ([{"name": "f", "parameters": {"type": "array"}}], "of type object"),
    ([{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "nope"}}}}],
     "not a valid JSON Schema"),
    ([{"name": "f"}, {"name": "f"}], "two tools are named"),
    ("get_weather", "must be a list"),
])
def test_a_bad_tool_definition_is_one_line(definitions, fragment):
    with pytest.raises(ToolError) as error:
        tools_of(definitions)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_openai_arguments_text_must_be_an_object():
    messages = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}]
    with pytest.raises(ToolError, match=r"messages\[0\].tool_calls\[0\].function.arguments"):
        for_template(messages)
    messages[0]["tool_calls"][0]["function"]["arguments"] = '{"a": 1}'
    [shaped] = for_template(messages)
    assert shaped["content"] == "" and shaped["tool_calls"][0]["function"]["arguments"] == {"a": 1}
