from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from tui.widgets.transcript import TAIL_CHARS, FrozenMarkdown, Transcript, split_point


def test_split_point_is_after_the_last_blank_line_outside_code():
    assert split_point("a\n\nb\n\nc") == len("a\n\nb\n\n")
    fenced = "intro\n\n```\ncode\n\nmore code\n```\n\nafter"
    assert split_point(fenced) == len("intro\n\n```\ncode\n\nmore code\n```\n\n")
    assert split_point("intro\n\n```\ncode\n\nstill open") == len("intro\n\n")
    assert split_point("no blank line") == 0


class TranscriptApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Transcript()


def test_a_long_answer_is_frozen_in_chunks_and_kept_whole():
    paragraph = "A paragraph with **bold** text and `code`, long enough to wrap once or twice. " * 3 + "\n\n"
    answer = "".join(f"## Part {i}\n\n{paragraph}```python\nprint({i})\n```\n\n" for i in range(40))

    async def scenario():
        app = TranscriptApp()
        async with app.run_test(size=(100, 30)) as pilot:
            message = await app.query_one(Transcript).add_assistant()
            for start in range(0, len(answer), 37):
                await message.add_answer(answer[start : start + 37])
            await pilot.pause()
            frozen = message.query(FrozenMarkdown)
            assert len(frozen) >= len(answer) // (2 * TAIL_CHARS)
            assert len(message._tail) <= TAIL_CHARS + 200
            assert message.answer_text == answer
            assert all(chunk.styles.height.value == len(chunk._lines) for chunk in frozen)
    asyncio.run(scenario())
