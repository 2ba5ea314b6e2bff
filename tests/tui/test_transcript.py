from __future__ import annotations

import asyncio

import pytest
from textual.app import App, ComposeResult

from tui.widgets.transcript import TAIL_CHARS, FrozenMarkdown, Split, Transcript, split_point


def test_split_point_is_after_the_last_blank_line_outside_code():
    assert split_point("a\n\nb\n\nc") == Split(len("a\n\nb\n\n"))
    fenced = "intro\n\n```\ncode\n\nmore code\n```\n\nafter"
    assert split_point(fenced) == Split(len("intro\n\n```\ncode\n\nmore code\n```\n\n"))
    assert split_point("intro\n\n```\ncode\n\nstill open") == Split(len("intro\n\n"))
    assert split_point("no blank line") == Split(0)


def test_forced_split_inside_a_code_block_closes_and_reopens_it():
    code = "```python\n" + "x = 1\n" * 10 + "y"
    assert split_point(code) == Split(0)
    cut = split_point(code, force=True)
    assert cut == Split(len("```python\n" + "x = 1\n" * 10), "```\n", "```python\n")
    assert split_point("one long line without breaks", force=True) == Split(0)


class TranscriptApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Transcript()


@pytest.mark.parametrize("kind", ["prose", "code"])
def test_a_long_answer_is_frozen_in_chunks_and_kept_whole(kind):
    paragraph = "A paragraph with **bold** text and `code`, long enough to wrap once or twice. " * 3 + "\n\n"
    if kind == "prose":
        answer = "".join(f"## Part {i}\n\n{paragraph}```python\nprint({i})\n```\n\n" for i in range(40))
    else:  # one code block far longer than the tail: it must still be cut
        answer = "```python\n" + "".join(f"value_{i} = compute({i})\n" for i in range(800)) + "```\n"

    async def scenario():
        app = TranscriptApp()
        async with app.run_test(size=(100, 30)) as pilot:
            message = await app.query_one(Transcript).add_assistant()
            for start in range(0, len(answer), 37):
                await message.add_answer(answer[start : start + 37])
            await pilot.pause()
            frozen = message.query(FrozenMarkdown)
            assert len(frozen) >= len(answer) // ((2 if kind == "prose" else 5) * TAIL_CHARS)
            assert len(message._tail) <= 4 * TAIL_CHARS + 200
            assert message.answer_text == answer
            assert all(chunk.styles.height.value == len(chunk._lines) for chunk in frozen)
    asyncio.run(scenario())
