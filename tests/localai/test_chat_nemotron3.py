"""Nemotron 3's chat conventions on a converted MoE hybrid: ChatML turns, `enable_thinking` (default on),
`truncate_history_thinking` (earlier thoughts emptied), the reasoning budget, and turn-state reuse when
the template rewrites earlier turns, on llama.cpp and ONNX Runtime."""

from __future__ import annotations

import dataclasses

import pytest

import localai
from localai.conversation import Conversation
from localai.events import collect
from localai.model import Model
from localai.package import Package
from localai.prompt import render
from tests.zoo import NEMOTRON3_TEMPLATE

SETTINGS = {"temperature": 0.0, "max_tokens": 10}


@pytest.fixture(params=["gguf", "onnx"])
def model(request, package, onnx_package):
    folder = package("nemotron3_moe", "f32") if request.param == "gguf" else onnx_package("nemotron3_moe", "fp32")
    loaded = localai.load(folder, n_ctx=1024)
    yield loaded
    loaded.close()


def test_thinking_on_and_off_through_enable_thinking(model):
    messages = [{"role": "user", "content": "hi"}]
    assert model.manifest.chat_template == NEMOTRON3_TEMPLATE
    assert render(model.format, messages, None)[0].endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
                                                      "<think>\n")  # on by default
    assert render(model.format, messages, True)[0].endswith("<|im_start|>assistant\n<think>\n")
    assert render(model.format, messages, False)[0].endswith("<|im_start|>assistant\n<think></think>")


def test_budget_caps_the_thought_and_off_gives_none(model):
    question = [{"role": "user", "content": "What is 2 + 2?"}]
    capped = model.chat(question, think=True, reasoning_budget=4, reasoning_grace=0, **SETTINGS)
    assert capped.usage.reasoning_tokens == 4 and capped.reasoning
    off = model.chat(question, think=False, **SETTINGS)
    assert (off.reasoning, off.usage.reasoning_tokens) == ("", 0)


def test_earlier_thoughts_are_emptied_and_turn_reuse_stays_exact(model):
    """The template rewrites each earlier assistant turn (its thought emptied) the same way every turn, so the
    last boundary is a token prefix: reused, and the greedy conversation equals one without reuse."""
    runs = {}
    for snapshots in (0, 2):
        model.turn_states.capacity = snapshots
        model.turn_states.clear()
        chat = Conversation(model, model.defaults.changed(**SETTINGS, think=True, reasoning_budget=5))
        finals = [collect(chat.send(text)) for text in ("one", "two words", "three words now")]
        runs[snapshots] = finals
        rendered = model.render(chat.messages)
        assert finals[0].reasoning and finals[0].reasoning.strip() not in rendered
        assert rendered.count("<think></think>") == 2  # the two earlier answers; the last keeps its thought
    assert [(f.reasoning, f.content, f.tokens) for f in runs[2]] == [(f.reasoning, f.content, f.tokens)
                                                                     for f in runs[0]]
    assert [f.cached_tokens for f in runs[0]] == [0, 0, 0]
    assert 0 == runs[2][0].cached_tokens < runs[2][1].cached_tokens < runs[2][2].cached_tokens


def test_a_template_that_rewrites_history_non_prefix_falls_back(model):
    """A history that is not a token prefix of the next prompt (here each turn is numbered from the end) must
    never restore a snapshot: every turn is processed from scratch, with the same answers."""
    rewriting = NEMOTRON3_TEMPLATE.replace("<|im_start|>{{ m['role'] }}\n", "<|im_start|>{{ m['role'] }} "
                                           "{{ loop.revindex }}\n")
    renumbered = Model.bind(Package(model.package.root, dataclasses.replace(model.manifest, chat_template=rewriting)),
                       model.backend)
    answers = {}
    for snapshots in (0, 2):
        renumbered.turn_states.capacity = snapshots
        renumbered.turn_states.clear()
        chat = Conversation(renumbered, renumbered.defaults.changed(**SETTINGS))
        answers[snapshots] = [collect(chat.send(text)) for text in ("one", "two words")]
    assert [f.cached_tokens for f in answers[2]] == [0, 0]
    assert [f.tokens for f in answers[2]] == [f.tokens for f in answers[0]]
