"""Tool calls in the chat app: each call a collapsible block in the answer (an invalid one says why), and
`/tool TEXT` in the prompt answers the next pending call."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from localai.events import ToolCall
from tests.tui.helpers import send
from tui.app import ChatApp
from tui.widgets.transcript import AssistantMessage, ToolCallBlock, Transcript, UserMessage

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"]}}}]


def test_a_call_is_a_block_and_slash_tool_answers_it(package, tmp_path):
    async def scenario():
        app = ChatApp(str(package("qwen3_tools", "q8_0")), load_options={"n_ctx": 2048}, save_dir=tmp_path,
                      settings={"tools": TOOLS, "tool_choice": "required", "think": False, "temperature": 1.0,
                                "seed": 2, "max_tokens": 200})
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await send(pilot, "weather")
            [block] = screen.query(ToolCallBlock)
            assert block.title == "Tool call: get_weather" and not block.collapsed
            assert block.call.valid and block.call.id == screen.conversation.messages[-1]["tool_calls"][0]["id"]
            assert "/tool TEXT answers" in str(screen.query(AssistantMessage).last().status.content)
            screen.conversation.options = screen.conversation.options.changed(tool_choice="none", max_tokens=5)
            await send(pilot, "/tool sunny")
            result = screen.query(UserMessage).last()
            assert str(result.content) == "get_weather returned: sunny" and result.has_class("tool-result")
            assert [m["role"] for m in screen.conversation.messages] == ["user", "assistant", "tool", "assistant"]
    asyncio.run(scenario())


def test_an_invalid_call_says_why_and_shows_what_was_written():
    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield Transcript()

    async def scenario():
        async with Host().run_test() as pilot:
            answer = await pilot.app.query_one(Transcript).add_assistant()
            await answer.add_tool_call(ToolCall("call_1", "get_weather", '{"city": 3}', text="<tool_call>...",
                                                error="the arguments do not match"))
            await answer.add_tool_call(ToolCall("call_2", "get_weather", '{"city": "Rome"}'))
            bad, good = pilot.app.query(ToolCallBlock)
            assert bad.title == "Invalid tool call: the arguments do not match" and bad.has_class("invalid")
            arguments = str(good.query_one(".arguments").content)
            assert good.title == "Tool call: get_weather" and '"city": "Rome"' in arguments
    asyncio.run(scenario())
