"""The chat app end to end on a real converted GGUF package, driven by Textual's Pilot."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.tui.helpers import chat_screen, send, type_text, until
from tui.app import ChatApp
from tui.screens.picker import PickerScreen
from tui.widgets.prompt import PromptInput
from tui.widgets.slider import Slider
from tui.widgets.transcript import AssistantMessage, UserMessage


@pytest.fixture
def app_for(package, tmp_path):
    def make(n_ctx=1024, **settings):
        return ChatApp(str(package("nemotron_h", "q8_0")), load_options={"n_ctx": n_ctx}, settings=settings,
                       save_dir=tmp_path / "saved")
    return make


def test_send_a_message_and_see_the_streamed_answer(app_for):
    async def scenario():
        app = app_for(think=False, temperature=0.0, max_tokens=24)
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await send(pilot, "hello there")
            [user] = screen.query(UserMessage)
            assert str(user.content) == "hello there"
            [answer] = screen.query(AssistantMessage)
            final_text = screen.conversation.messages[-1]["content"]
            assert final_text and answer.answer_text == final_text
            assert screen.metrics[-1].answer_tokens > 0 and screen.metrics[-1].reasoning_tokens == 0
            assert "tokens" in str(answer.status.content)
    asyncio.run(scenario())


def test_the_budget_slider_limits_the_next_turn(app_for):
    async def scenario():
        app = app_for(think=True, temperature=1.0, seed=1, max_tokens=200)
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await send(pilot, "think about it")
            assert screen.metrics[-1].reasoning_tokens > 24  # unlimited: the random model thinks on
            slider = screen.query_one("#budget", Slider)
            slider.focus()
            await pilot.press("home", "right")
            assert slider.value == 16
            screen.query_one("#prompt").focus()
            await send(pilot, "and again")
            assert 0 < screen.metrics[-1].reasoning_tokens <= 16 + 8  # budget plus default grace
            [_, second] = screen.query(AssistantMessage)
            assert second.thinking.title == f"Thinking ({screen.metrics[-1].reasoning_tokens} tokens)"
            assert second.thinking.collapsed
    asyncio.run(scenario())


def test_escape_stops_the_answer_and_keeps_it(app_for):
    async def scenario():
        # greedy, this random model answers for several hundred tokens before it ends its turn
        app = app_for(n_ctx=16384, think=False, temperature=0.0, max_tokens=20000)
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await chat_screen(pilot)
            # posted directly: pilot.press("enter") would wait until the app is idle, i.e. the answer is over
            screen.query_one(PromptInput).post_message(PromptInput.Submitted("go on and on"))
            await until(pilot, lambda: screen.busy, timeout=5)
            await pilot.press("escape")
            await until(pilot, lambda: not screen.busy)
            assert screen.metrics[-1].finish_reason == "cancelled"
            assert screen.metrics[-1].answer_tokens < 20000
            assert screen.conversation.messages[-1]["role"] == "assistant"  # the partial answer is kept
    asyncio.run(scenario())


def test_save_regenerate_and_new_chat(app_for, tmp_path):
    async def scenario():
        app = app_for(think=False, temperature=0.0, max_tokens=12)
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await send(pilot, "hello")
            await pilot.press("ctrl+s")
            saved = sorted((tmp_path / "saved").iterdir())
            assert [p.suffix for p in saved] == [".json", ".md"]
            messages = json.loads(saved[0].read_text())["messages"]
            assert messages == screen.conversation.messages
            assert messages[-1]["settings"] == {"think": False, "reasoning_budget": None, "temperature": 0.0,
                                                "top_p": 0.95, "max_tokens": 12}  # the answer ties back to the controls
            assert "**user**" in saved[1].read_text() and "thinking off · budget unlimited" in saved[1].read_text()
            [notice] = [n for n in app._notifications if n.title == "Saved"]
            assert notice.message.startswith(str(tmp_path / "saved" / "chat-"))  # not "Saved" twice
            await pilot.press("ctrl+e")
            assert len(list((tmp_path / "saved").glob("metrics-*"))) == 2
            [exported] = json.loads(next((tmp_path / "saved").glob("metrics-*.json")).read_text())
            assert (exported["think"], exported["temperature"], exported["max_tokens"]) == (False, 0.0, 12)
            before = screen.conversation.messages[-1]["content"]
            await pilot.press("ctrl+r")
            await until(pilot, lambda: not screen.busy and len(screen.metrics) == 2)
            assert len(screen.query(AssistantMessage)) == 1 and len(screen.conversation.messages) == 2
            assert screen.conversation.messages[-1]["content"] == before  # greedy: the same answer again
            await pilot.press("ctrl+n")
            await until(pilot, lambda: not screen.query(UserMessage))
            assert screen.conversation.messages == [] and screen.metrics == []
    asyncio.run(scenario())


def test_a_model_that_fails_to_load_leaves_the_app_running(tmp_path):
    async def scenario():
        app = ChatApp(str(tmp_path / "missing.gguf"), save_dir=tmp_path)
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: any("Cannot load" in (n.title or "") for n in app._notifications))
            assert isinstance(app.screen, PickerScreen)
    asyncio.run(scenario())


def test_picker_lists_the_store_and_opens_a_model(package, isolated_store, tmp_path, cli):
    import shutil

    shutil.copytree(package("nemotron_h", "q8_0"), isolated_store / "models" / "tiny")
    listed = cli("ls").out.splitlines()[1]

    async def scenario():
        app = ChatApp(None, load_options={"n_ctx": 512}, save_dir=tmp_path)
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.screen.query_one("#models")
            assert table.row_count == 1
            size = table.get_row_at(0)[4]
            assert size.endswith(" MB") and f"  {size}  " in listed  # one size formatter for ls and the picker
            await pilot.press("enter")
            screen = await chat_screen(pilot)
            assert screen.model.manifest.name == "nemotron-h-q8_0"
    asyncio.run(scenario())


def test_typing_in_the_picker_goes_to_the_path_box(package, isolated_store, tmp_path):
    import shutil

    shutil.copytree(package("nemotron_h", "q8_0"), isolated_store / "models" / "tiny")
    path = str(package("nemotron_h", "f32"))

    async def scenario():
        app = ChatApp(None, load_options={"n_ctx": 512}, save_dir=tmp_path)
        async with app.run_test(size=(140, 40)) as pilot:
            assert app.focused is app.screen.query_one("#models")  # arrows and Enter pick from the list
            await type_text(pilot, path)
            assert app.screen.query_one("#path").value == path
            await pilot.press("enter")
            screen = await chat_screen(pilot)
            assert screen.model.manifest.name == "nemotron-h-f32"  # the typed path, not the highlighted row
    asyncio.run(scenario())


def test_keyboard_only_thinking_focus_and_hints(app_for):
    async def scenario():
        app = app_for(think=True, temperature=1.0, seed=1, max_tokens=40)
        async with app.run_test(size=(140, 40)) as pilot:
            prompt = (await chat_screen(pilot)).query_one(PromptInput)
            assert "F1" in str(prompt.placeholder) and "Enter sends" in str(prompt.placeholder)  # the empty chat's hint
            screen = await send(pilot, "think about it")
            stops = [type(w).__name__ + (f"#{w.id}" if w.id else "") for w in screen.focus_chain]
            assert stops == ["Transcript#transcript", "PromptInput#prompt", "Switch#think", "Slider#budget",
                             "Input#temperature", "Input#top_p", "Input#max_tokens"]  # answers add no stops
            [answer] = screen.query(AssistantMessage)
            assert answer.thinking.collapsed
            await pilot.press("ctrl+o")
            assert not answer.thinking.collapsed
            await pilot.press("ctrl+o")
            assert answer.thinking.collapsed
            transcript = screen.query_one("#transcript")
            await pilot.press("shift+tab")
            assert app.focused is transcript and transcript.styles.border_left[0] == "thick"  # focus shows
            await pilot.press("tab")
            switch = screen.query_one("#think")
            await pilot.press("ctrl+t")  # from the prompt
            assert app.focused is prompt and switch.value is False
            await send(pilot, "no thinking now")
            assert screen.metrics[-1].reasoning_tokens == 0 and screen.metrics[-1].think is False
    asyncio.run(scenario())


@pytest.mark.parametrize("width, table", [(80, False), (120, True)])
def test_the_transcript_keeps_most_of_a_narrow_terminal(app_for, width, table):
    async def scenario():
        app = app_for(think=False)
        async with app.run_test(size=(width, 24)) as pilot:
            screen = await chat_screen(pilot)
            assert screen.query_one("#main").size.width >= width - 46
            assert screen.query_one("#main").size.width >= 48
            assert screen.query_one("#turns").display is table
    asyncio.run(scenario())


def test_quitting_during_an_answer_stops_it_and_closes_the_model(app_for):
    async def scenario():
        app = app_for(n_ctx=16384, think=False, temperature=0.0, max_tokens=20000)
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await chat_screen(pilot)
            screen.query_one(PromptInput).post_message(PromptInput.Submitted("go on and on"))
            await until(pilot, lambda: screen.busy and screen.model.backend.n_past > 40, timeout=10)
            await pilot.press("ctrl+q")
        assert app.model.backend._closed
    asyncio.run(scenario())


def test_keys_during_an_answer_do_not_start_a_second_one(app_for):
    async def scenario():
        app = app_for(think=False, temperature=0.0, max_tokens=2000)  # answers of several hundred tokens
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await send(pilot, "first")
            prompt = screen.query_one(PromptInput)
            prompt.post_message(PromptInput.Submitted("second"))
            await until(pilot, lambda: screen.busy, timeout=5)
            await screen.action_regenerate()  # must be refused, not run in parallel on the same model
            prompt.text = "typed meanwhile"
            prompt.post_message(PromptInput.Submitted("typed meanwhile"))
            await until(pilot, lambda: not screen.busy and len(screen.metrics) == 2)
            assert prompt.text == "typed meanwhile"  # refused while busy: kept for later
            await pilot.pause(0.3)
            assert len(screen.metrics) == 2 and not screen.busy  # no regeneration ran
            assert screen.conversation.messages[-2] == {"role": "user", "content": "second"}
    asyncio.run(scenario())


def test_a_failed_turn_leaves_no_trace_and_gives_the_question_back(package, tmp_path):
    async def scenario():
        app = ChatApp(str(package("nemotron_h", "q8_0")), load_options={"n_ctx": 64},
                      settings={"context_policy": "error", "think": False}, save_dir=tmp_path)
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await chat_screen(pilot)
            question = "tell me about rivers and mountains " * 6
            screen.query_one(PromptInput).post_message(PromptInput.Submitted(question))
            await until(pilot, lambda: any("Generation failed" in (n.title or "") for n in app._notifications))
            await until(pilot, lambda: not screen.busy)
            assert not screen.query(UserMessage) and not screen.query(AssistantMessage)
            assert screen.query_one(PromptInput).text == question and screen.conversation.messages == []
    asyncio.run(scenario())


def test_saving_into_an_unwritable_place_is_a_notification(package, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")

    async def scenario():
        app = ChatApp(str(package("nemotron_h", "q8_0")), load_options={"n_ctx": 512}, save_dir=blocker / "chats")
        async with app.run_test(size=(140, 40)) as pilot:
            await chat_screen(pilot)
            await pilot.press("ctrl+s")
            await until(pilot, lambda: any("Cannot save" in n.message for n in app._notifications))
            assert app.is_running
    asyncio.run(scenario())
