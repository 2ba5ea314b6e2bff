from __future__ import annotations

import pytest

from localai.textstream import HoldbackMatcher, Phase, ReasoningSplitter


def _feed_all(matcher: HoldbackMatcher, pieces: list[str]):
    released = []
    for piece in pieces:
        text, match, rest = matcher.feed(piece)
        released.append(text)
        if match:
            return "".join(released), match, rest
    return "".join(released) + matcher.flush(), None, ""


@pytest.mark.parametrize("pieces", [["Hel", "lo wo", "rld"], ["H", "e", "l", "l", "o", " ", "w", "o", "r", "l", "d"],
                                    ["Hello world"]])
def test_stop_string_across_pieces(pieces):
    released, match, _ = _feed_all(HoldbackMatcher(["lo wo"]), pieces)
    assert (released, match) == ("Hel", "lo wo")


def test_partial_match_is_released_when_it_fails():
    matcher = HoldbackMatcher(["</think>"])
    assert matcher.feed("a </th") == ("a ", None, "")
    assert matcher.feed("ing") == ("</thing", None, "")
    assert matcher.flush() == ""


def test_earliest_and_longest_pattern_wins():
    assert HoldbackMatcher(["b", "ab", "abc"]).feed("xabcd") == ("x", "abc", "d")


def test_splitter_routes_text_between_markers():
    splitter = ReasoningSplitter("<think>", "</think>", Phase.BEFORE)
    out = []
    for piece in ["  <th", "ink>\nstep one", " and two</th", "ink>\n\nThe ", "answer."]:
        out += splitter.feed(piece)
    out += splitter.flush()
    reasoning = "".join(t for p, t in out if p is Phase.REASONING)
    answer = "".join(t for p, t in out if p is Phase.ANSWER)
    assert (reasoning, answer) == ("step one and two", "The answer.")


def test_splitter_without_reasoning_block_is_all_answer():
    splitter = ReasoningSplitter("<think>", "</think>", Phase.BEFORE)
    out = splitter.feed("\n<th") + splitter.feed("e end") + splitter.flush()
    assert out == [(Phase.ANSWER, "<the end")]


def test_forced_end_keeps_held_text_as_reasoning():
    splitter = ReasoningSplitter("<think>", "</think>", Phase.REASONING)
    assert splitter.feed("almost </") == [(Phase.REASONING, "almost ")]
    assert splitter.end_reasoning() == [(Phase.REASONING, "</")]
    assert splitter.feed("\n\nok") == [(Phase.ANSWER, "ok")]
