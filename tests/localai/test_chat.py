"""The chat engine on the real llama.cpp backend with a converted tiny Nemotron-H.

Where a behaviour depends on what the model writes (a thought that runs past its budget, a newline at a
given place, a character split across tokens), `Script` picks the tokens instead of the sampler: the
backend, tokenizer, budget controller and streaming all run for real, only the choice is scripted.
Other tests sample freely from the random-weight model and check properties that hold for any output.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence

import numpy as np
import pytest

import localai
from localai.chat import chat
from localai.conversation import Conversation
from localai.errors import SettingError
from localai.events import ContentDelta, Final, Notice, ReasoningDelta
from localai.model import Model
from localai.options import ChatOptions, package_options
from localai.package import Package
from localai.prompt import ContextOverflowError, render
from localai.reasoning import end_of_thinking_text, thinking_messages
from localai.sampling import SamplingParams
from localai.textstream import Phase


@pytest.fixture(scope="module")
def model(package):
    loaded = localai.load(package("nemotron_h", "q8_0"), n_ctx=1024)
    yield loaded
    loaded.close()


class Script:
    """Chooses tokens from a script: the thought until it is closed (by the engine or by the script
    itself when the thought runs out), then the answer, then end-of-turn. `thought` None: answer only."""

    def __init__(self, model: Model, thought: str | None, answer: str) -> None:
        self.ids = lambda text: model.backend.tokenize(text, add_bos=False, special=True)
        self.thinking = thought is not None
        self.thought, self.answer = self.ids(thought or ""), self.ids(answer)
        [self.end_id] = self.ids(model.format.thinking.end)
        [self.end_of_turn] = self.ids("<|end|>")
        self.prompt_length: int | None = None
        self.i = self.j = 0

    def __call__(self, logits: np.ndarray, context: Sequence[int]) -> int:
        if self.prompt_length is None:
            self.prompt_length = len(context)
        if self.thinking and self.end_id not in context[self.prompt_length :]:
            if self.i < len(self.thought):
                self.i += 1
                return self.thought[self.i - 1]
            return self.end_id
        if self.j < len(self.answer):
            self.j += 1
            return self.answer[self.j - 1]
        return self.end_of_turn


def _run(model, script=None, messages=None, **settings):
    events = list(chat(model.backend, model.format, messages or [{"role": "user", "content": "What is 2 + 2?"}],
                       model.defaults.changed(**settings), sampler=script))
    final = events[-1]
    assert isinstance(final, Final)
    # deltas concatenate exactly to the final texts, and no character arrives broken
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert (reasoning, content) == (final.reasoning, final.content)
    return final, events


def _count(sequence: list[int], sub: list[int]) -> int:
    return sum(sequence[i : i + len(sub)] == sub for i in range(len(sequence) - len(sub) + 1))


def _end_text(model):
    return model.backend.tokenize(end_of_thinking_text(model.format.thinking), add_bos=False, special=True)


THOUGHT = " ".join(f"step{i}" for i in range(60))


def test_budget_with_no_grace_cuts_exactly_at_the_budget(model):
    script = Script(model, THOUGHT, "Four.")
    final, _ = _run(model, script, think=True, reasoning_budget=10, reasoning_grace=0)
    assert final.usage.reasoning_tokens == 10
    expected = b"".join(model.backend.token_bytes(t) for t in script.thought[:10]).decode().strip()
    assert final.reasoning == expected
    assert _count(final.tokens, _end_text(model)) == 1
    assert final.content == "Four."
    assert final.finish_reason == "stop"
    assert final.usage.completion_tokens == 10 + len(script.answer)


def test_thought_ends_at_the_next_newline_within_the_grace(model):
    thought = "one two three four five six seven\neight nine ten eleven twelve thirteen fourteen"
    script = Script(model, thought, "Done.")
    newline_at = next(i for i, t in enumerate(script.thought) if b"\n" in model.backend.token_bytes(t)) + 1
    assert 10 < newline_at < 10 + 30
    final, _ = _run(model, script, think=True, reasoning_budget=10, reasoning_grace=30)
    assert final.usage.reasoning_tokens == newline_at
    assert final.reasoning == "one two three four five six seven\n"
    assert final.content == "Done."


@pytest.mark.parametrize(("budget", "grace", "expected"), [(5, 3, 8), (20, None, 28), (100, None, 110)])
def test_grace_bounds_a_thought_without_newline(model, budget, grace, expected):
    script = Script(model, THOUGHT * 3, "Ok.")
    final, _ = _run(model, script, think=True, reasoning_budget=budget, reasoning_grace=grace)
    assert final.usage.reasoning_tokens == expected  # default grace: max(8, budget // 10)
    assert _count(final.tokens, _end_text(model)) == 1


def test_a_thought_that_ends_by_itself_is_left_alone(model):
    script = Script(model, "short thought", "The answer.")
    final, _ = _run(model, script, think=True, reasoning_budget=50)
    assert final.reasoning == "short thought"
    assert final.usage.reasoning_tokens == len(script.thought)
    assert _count(final.tokens, _end_text(model)) == 0
    assert final.tokens.count(script.end_id) == 1
    assert final.content == "The answer."


@pytest.mark.parametrize("settings", [{"reasoning_budget": 0}, {"think": False},
                                      {"think": True, "reasoning_budget": 0}])
def test_budget_zero_and_thinking_off_give_no_reasoning(model, settings):
    for seed in range(3):
        final, events = _run(model, max_tokens=24, temperature=1.0, seed=seed, **settings)
        assert final.reasoning == "" and final.usage.reasoning_tokens == 0
        assert not any(isinstance(e, ReasoningDelta) for e in events)
        assert final.usage.completion_tokens > 0


def test_free_sampling_respects_budget_plus_grace(model):
    injections = 0
    for seed in range(4):
        final, _ = _run(model, max_tokens=60, temperature=1.0, seed=seed, think=True, reasoning_budget=6)
        assert final.usage.reasoning_tokens <= 6 + 8
        injected = _count(final.tokens, _end_text(model))
        assert injected <= 1
        if injected:
            assert final.usage.reasoning_tokens >= 6
            assert final.usage.completion_tokens > final.usage.reasoning_tokens  # the answer went on
        injections += injected
    assert injections >= 2  # the random model does think past its budget


def test_stop_string_across_token_boundaries(model):
    script = Script(model, None, "Hello wonderful world, goodbye.")
    pieces = [model.backend.token_bytes(t).decode() for t in script.answer]
    assert not any("lo won" in piece for piece in pieces)
    final, _ = _run(model, script, think=False, stop=["lo won"])
    assert (final.content, final.finish_reason) == ("Hel", "stop")


def test_stop_string_in_reasoning_stops_too(model):
    script = Script(model, "first second STOP third", "never")
    final, _ = _run(model, script, think=True, stop=["STOP"])
    assert (final.reasoning, final.content, final.finish_reason) == ("first second ", "", "stop")


def test_utf8_character_split_across_tokens_arrives_whole(model):
    text = "Tokyo: 東京タワー ñandú"
    script = Script(model, None, text)
    partial = [t for t in script.answer if not _decodes(model.backend.token_bytes(t))]
    assert partial, "the test text must contain a character split across tokens"
    final, events = _run(model, script, think=False)
    assert final.content == text
    assert not any("\ufffd" in e.text for e in events if isinstance(e, ContentDelta))


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _with_template(model: Model, template: str | None) -> Model:
    manifest = dataclasses.replace(model.manifest, chat_template=template)
    return Model.bind(Package(model.package.root, manifest), model.backend)


QWEN_STYLE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
              "{% if add_generation_prompt %}<|assistant|>"
              "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
              "{% endif %}")
PLAIN = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
         "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _prompt(model, messages, think):
    return render(model.format, messages, think)[0]


def test_thinking_switch_follows_each_template_convention(model):
    messages = [{"role": "system", "content": "Be brief. /think"}, {"role": "user", "content": "hi"}]
    # Nemotron Nano 2: /think or /no_think in the system prompt
    assert _prompt(model, messages, False).endswith("<|system|>Be brief.<|end|>\n<|user|>hi<|end|>\n"
                                                    "<|assistant|><think></think>")
    assert _prompt(model, messages[1:], True).endswith("<|assistant|><think>\n")
    # Qwen3: enable_thinking
    qwen = _with_template(model, QWEN_STYLE)
    assert _prompt(qwen, messages, False).endswith("<|assistant|><think>\n\n</think>\n\n")
    assert _prompt(qwen, messages, True).endswith("<|assistant|><think>\n")  # opened by the engine
    # anything else: the engine prefills the think block
    plain = _with_template(model, PLAIN)
    assert _prompt(plain, messages, False).endswith("<|assistant|><think>\n</think>\n\n")
    assert _prompt(plain, messages, True).endswith("<|assistant|><think>\n")
    assert _prompt(plain, messages, None).endswith("<|assistant|>")


def test_the_switch_keeps_the_system_prompt_intact():
    system = "Rules:\n  1. Answer in JSON.\n  2. See https://x.org/thinking/api /think\n"
    [message, _] = thinking_messages("... /no_think ...", [{"role": "system", "content": system},
                                                          {"role": "user", "content": "q"}], False)[0]
    assert message["content"] == "Rules:\n  1. Answer in JSON.\n  2. See https://x.org/thinking/api\n/no_think"


def test_think_markers_in_messages_are_text(model):
    question = [{"role": "user", "content": "What is the <think> tag for?"}]
    for template in (QWEN_STYLE, PLAIN):
        templated = _with_template(model, template)
        text, _, phase = render(templated.format, question, None)
        assert phase is Phase.BEFORE and text.endswith("<|assistant|>")
        text, _, phase = render(templated.format, question, False)
        assert phase is Phase.ANSWER and text.endswith("<think>\n\n</think>\n\n" if template == QWEN_STYLE
                                                       else "<|assistant|><think>\n</think>\n\n")
    final, _ = _run(_with_template(model, PLAIN), Script(model, None, "An HTML-like tag."), messages=question)
    assert (final.reasoning, final.content) == ("", "An HTML-like tag.")


def test_generic_template_thinking_on_and_off_on_the_backend(model):
    plain = _with_template(model, PLAIN)
    off, _ = _run(plain, Script(plain, THOUGHT, "Yes."), think=False)
    assert (off.reasoning, off.usage.reasoning_tokens) == ("", 0)
    on, _ = _run(plain, Script(plain, THOUGHT, "Yes."), think=True, reasoning_budget=4, reasoning_grace=0)
    assert on.usage.reasoning_tokens == 4 and on.content == "Yes."


def test_context_overflow_drops_oldest_turns_or_refuses(package):
    small = localai.load(package("nemotron_h", "q8_0"), n_ctx=96)
    try:
        turn = "tell me about rivers and mountains and small towns " * 2
        history = []
        for i in range(4):
            history += [{"role": "user", "content": f"{i} {turn}"}, {"role": "assistant", "content": f"answer {i}"}]
        history.append({"role": "user", "content": "last question"})
        final, events = _run(small, messages=history, max_tokens=4, think=False)
        notices = [e for e in events if isinstance(e, Notice)]
        assert notices and all("dropped the" in n.text and n.dropped_messages > 0 for n in notices)
        assert final.usage.prompt_tokens < 96
        conversation = Conversation(small, small.defaults.changed(max_tokens=4, think=False), messages=history[:-1])
        dropped = sum(e.dropped_messages for e in conversation.send("last question") if isinstance(e, Notice))
        assert dropped and len(conversation.messages) == len(history) - dropped + 1  # the history forgot them too
        assert history[0] not in conversation.messages
        with pytest.raises(ContextOverflowError, match="context holds 96"):
            list(small.stream_chat(history, context_policy="error", max_tokens=4))
        with pytest.raises(ContextOverflowError):
            list(small.stream_chat([{"role": "user", "content": turn * 5}], max_tokens=4))
    finally:
        small.close()


def test_conversation_keeps_history_and_the_template_drops_old_reasoning(model, tmp_path):
    conversation = Conversation(model, model.defaults.changed(max_tokens=30, temperature=0.0), system="Be brief.")
    first = [e for e in conversation.send("first question", think=True, reasoning_budget=5, reasoning_grace=0)][-1]
    assert first.usage.reasoning_tokens == 5
    assert [m["role"] for m in conversation.messages] == ["system", "user", "assistant"]
    stored = conversation.messages[-1]["content"]
    assert stored.startswith("<think>\n") and first.reasoning in stored
    rendered = model.render([*conversation.messages, {"role": "user", "content": "second"}])
    assert first.reasoning.strip() not in rendered
    list(conversation.send("second question", think=False))
    assert len(conversation.messages) == 5
    conversation.save(tmp_path / "chat.json")
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert saved["messages"] == conversation.messages
    conversation.reset()
    assert conversation.messages == [{"role": "system", "content": "Be brief."}]


def test_options_take_package_defaults_and_validate():
    opts = package_options({"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 77}).changed(seed=3, stop="END")
    assert opts.sampling == SamplingParams(temperature=0.6, top_p=0.95, seed=3)
    assert (opts.max_tokens, opts.stop) == (77, ("END",))
    assert package_options({}).sampling.temperature == 0.7
    greedy = package_options({"do_sample": False, "temperature": 0.6})
    assert greedy.sampling.temperature == 0.0  # as transformers
    assert greedy.changed(temperature=0.3).sampling.temperature == 0.3
    assert ChatOptions(think=True, reasoning_budget=0).effective_think is False


BAD_SETTINGS = [
    ({"reasoning_budget": -1}, "reasoning_budget must be a whole number >= 0, got -1"),
    ({"max_tokens": 0}, "max_tokens must be a whole number of at least 1"),
    ({"stop": [1]}, "stop must be a tuple of strings"),
    ({"think": "yes"}, "think must be true, false or unset"),
    ({"context_policy": "x" * 10_000}, "context_policy must be 'drop_oldest' or 'error', got 'xxx"),
]


@pytest.mark.parametrize(("changes", "fragment"), [
    *BAD_SETTINGS,
    ({"stop": ["x" * 257]}, "stop takes at most 8 strings of at most 256 characters"),
    ({"stop": ["x"] * 9}, "stop takes at most 8 strings"),
    ({"temperature": float("nan")}, "temperature must be >= 0, got nan"),
    ({"top_p": "x" * 10_000}, "top_p must be in (0, 1], got 'xxx"),
    ({"temprature": 0.5}, "unknown setting 'temprature'; the settings are constraint, context_policy, max_tokens"),
])
def test_every_bad_setting_is_one_short_line_naming_it(changes, fragment):
    with pytest.raises(SettingError) as caught:
        ChatOptions().changed(**changes)
    message = str(caught.value)
    assert fragment in message and "\n" not in message and len(message) < 300, message


@pytest.mark.parametrize(("changes", "fragment"), BAD_SETTINGS)
def test_dataclasses_replace_checks_as_changed_does(changes, fragment):
    with pytest.raises(SettingError, match=re.escape(fragment)):
        dataclasses.replace(ChatOptions(), **changes)


def test_a_budget_cut_inside_a_character_drops_its_bytes(model):
    thought = "abc タワー and more words to think about"
    script = Script(model, thought, "Done.")
    partial = next(i for i, t in enumerate(script.thought) if not _decodes(model.backend.token_bytes(t)))
    final, events = _run(model, script, think=True, reasoning_budget=partial + 1, reasoning_grace=0)
    assert final.usage.reasoning_tokens == partial + 1
    assert final.content == "Done."
    assert not any("\ufffd" in e.text for e in events if isinstance(e, ReasoningDelta | ContentDelta))


def test_a_failed_regeneration_keeps_the_last_exchange(model):
    conversation = Conversation(model, model.defaults.changed(max_tokens=8, think=False, temperature=0.0))
    list(conversation.send("hello"))
    before = list(conversation.messages)
    with pytest.raises(localai.LocalAIError, match="max_tokens"):
        list(conversation.regenerate(max_tokens=0))
    assert conversation.messages == before
    list(conversation.regenerate())
    assert len(conversation.messages) == 2 and conversation.messages[0] == before[0]


def test_dropping_turns_leaves_room_for_the_answer(package):
    small = localai.load(package("nemotron_h", "q8_0"), n_ctx=128)
    try:
        history = []
        for i in range(6):
            history += [{"role": "user", "content": f"question {i} about rivers and towns"},
                        {"role": "assistant", "content": f"answer {i} about mountains"}]
        history.append({"role": "user", "content": "last"})
        final, events = _run(small, messages=history, max_tokens=24, think=False, temperature=0.0)
        notices = [e for e in events if isinstance(e, Notice)]
        assert len(notices) == 1 and notices[0].dropped_messages > 0
        assert final.usage.prompt_tokens + min(24, 128 // 4) <= 128
    finally:
        small.close()


def test_a_long_history_drops_the_fewest_turns_in_a_few_renders(model, monkeypatch):
    """1000 turns in a 256-token context: the kept turns leave room for the answer, one more would not, and
    finding them takes a logarithmic number of renders (a request of thousands of messages stays cheap)."""
    import localai.prompt as prompt_module

    system = [{"role": "system", "content": "be brief"}]
    history = [m for i in range(1000) for m in ({"role": "user", "content": f"question {i} about rivers"},
                                                 {"role": "assistant", "content": f"answer {i}"})]
    messages = [*system, *history, {"role": "user", "content": "last"}]
    opts = ChatOptions(max_tokens=24, think=False)
    renders = []
    original = prompt_module.render
    monkeypatch.setattr(prompt_module, "render", lambda *a: renders.append(1) or original(*a))
    fitted = prompt_module.fit(model.format, messages, opts, 256)
    assert len(renders) <= 2 + 11 and fitted.dropped % 2 == 0 and fitted.dropped > 0
    assert len(fitted.tokens) + 24 <= 256
    one_more = [*system, *history[fitted.dropped - 2 :], messages[-1]]
    monkeypatch.setattr(prompt_module, "render", original)
    longer = prompt_module.fit(model.format, one_more, dataclasses.replace(opts, context_policy="error"), 10_000)
    assert len(longer.tokens) + 24 > 256


def test_closing_the_model_under_a_generating_thread_is_an_error_not_a_crash(package):
    import threading

    model = localai.load(package("nemotron_h", "q8_0"), n_ctx=16384)
    outcome = []

    def generate():
        try:
            model.chat([{"role": "user", "content": "go"}], max_tokens=15000, temperature=0.0, think=False)
            outcome.append("finished")
        except localai.LocalAIError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=generate)
    worker.start()
    while model.backend.n_past < 50:
        pass
    model.close()
    worker.join(timeout=30)
    assert outcome == ["the model has been closed"]


@pytest.mark.parametrize(("defaults", "fragment"), [
    ({"max_new_tokens": float("inf")}, "max_tokens must be a whole number"),
    ({"max_new_tokens": "abc"}, "max_tokens must be a whole number"),
    ({"max_new_tokens": [1]}, "max_tokens must be a whole number"),
    ({"temperature": "hot"}, "temperature must be >= 0"),
])
def test_generation_defaults_from_a_package_are_checked_like_any_setting(defaults, fragment):
    with pytest.raises(localai.LocalAIError, match=fragment):
        package_options(defaults)
