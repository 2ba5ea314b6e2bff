"""Turn-state reuse: a chat turn starts from the snapshot of the previous turn's boundary, and that is
exactly what processing the whole re-rendered conversation gives."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import localai
from localai.backends.base import BackendState
from localai.conversation import Conversation
from localai.events import collect
from localai.prompt import render
from localai.turn_state import TurnStates, prefill

SETTINGS = {"temperature": 0.0, "max_tokens": 12, "think": True, "reasoning_budget": 6}
CASES = [("gguf", "nemotron_h", 1e-3), ("gguf", "llama", 1e-3), ("onnx", "nemotron_h", 1e-4)]


def _load(fmt, name, package, onnx_package, **options):
    folder = package(name, "f32") if fmt == "gguf" else onnx_package(name, "fp32")
    return localai.load(folder, n_ctx=1024, **options)


def _prompt(model, messages):
    text, history, _ = render(model.format, messages, True)
    prompt, boundary = model.tokenize_prompt(text), len(model.tokenize_prompt(history))
    return prompt, boundary


@pytest.mark.parametrize(("fmt", "name", "tolerance"), CASES)
def test_restored_turn_state_gives_the_logits_of_the_whole_conversation(fmt, name, tolerance, package,
                                                                        onnx_package):
    model = _load(fmt, name, package, onnx_package)
    chat = Conversation(model, model.defaults.changed(**SETTINGS), system="be brief")
    collect(chat.send("the first question about rivers"))
    prompt, boundary = _prompt(model, [*chat.messages, {"role": "user", "content": "and the second one?"}])
    logits, cached = prefill(model.backend, prompt, model.turn_states, boundary)
    assert 0 < cached < boundary < len(prompt)  # the previous boundary, then this turn's new tokens
    expected = model.backend.logits(prompt)[-1]
    model.close()
    assert np.abs(logits - expected).max() <= tolerance


@pytest.mark.parametrize(("fmt", "name", "tolerance"), CASES[:1] + CASES[2:])
def test_greedy_conversation_is_the_same_with_and_without_reuse(fmt, name, tolerance, package, onnx_package):
    answers, cached = {}, {}
    for snapshots in (0, 2):
        model = _load(fmt, name, package, onnx_package, turn_snapshots=snapshots)
        chat = Conversation(model, model.defaults.changed(**SETTINGS), system="be brief")
        finals = [collect(chat.send(text)) for text in ("one", "two words", "and three words")]
        finals.append(collect(chat.regenerate()))
        answers[snapshots] = [(f.reasoning, f.content, f.tokens) for f in finals]
        cached[snapshots] = [f.cached_tokens for f in finals]
        model.close()
    assert answers[2] == answers[0]
    assert cached[0] == [0, 0, 0, 0]
    first, second, third, regenerated = cached[2]
    assert first == 0 and 0 < second < third
    assert regenerated > third  # regenerate restarts from the last turn's own boundary


def test_a_changed_system_prompt_is_processed_from_scratch_and_logged(package, onnx_package, caplog):
    model = _load("gguf", "nemotron_h", package, onnx_package)
    collect(Conversation(model, model.defaults.changed(**SETTINGS), system="be brief").send("hello"))
    with caplog.at_level(logging.DEBUG, logger="localai.turn_state"):
        final = collect(Conversation(model, model.defaults.changed(**SETTINGS), system="be verbose").send("hello"))
    model.close()
    assert final.cached_tokens == 0
    assert "no snapshot is a prefix" in caplog.text


def test_snapshots_are_bounded_and_the_longest_prefix_wins():
    states = TurnStates(capacity=2)
    for tokens in ((1, 2), (1, 2, 3, 4), (1, 2, 3)):
        states.add(tokens, BackendState(len(tokens), 10, tokens))
    assert states.nbytes == 20  # (1, 2) was the oldest and is gone
    assert states.best_prefix([1, 2, 3, 4, 5])[0] == 4
    assert states.best_prefix([1, 2, 3, 9])[0] == 3
    assert states.best_prefix([1, 2, 3, 4]) [0] == 3  # a whole-prompt match leaves nothing to evaluate
    assert states.best_prefix([1, 2]) is None
    states.clear()
    assert states.nbytes == 0


def test_editing_the_last_message_reuses_the_turn_before(package, onnx_package):
    model = _load("onnx", "nemotron_h", package, onnx_package)
    chat = Conversation(model, model.defaults.changed(**SETTINGS), system="be brief")
    collect(chat.send("first"))
    first_boundary = _prompt(model, chat.messages[:2])[1]  # system + first question
    collect(chat.send("second"))
    edited = [*chat.messages[:-2], {"role": "user", "content": "second, edited"}]
    final = model.chat(edited, **SETTINGS)
    model.close()
    assert final.cached_tokens == first_boundary
