"""Streaming text plumbing: find markers and stop strings in text that arrives a token at a time.

A marker can straddle tokens ("</thi" + "nk>"), so text that might be the start of one is held back
until the next piece decides it; everything else is released at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class HoldbackMatcher:
    """Finds the first occurrence of any of `patterns` in a growing text."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = sorted({p for p in patterns if p}, key=len, reverse=True)
        self._buffer = ""

    def feed(self, text: str) -> tuple[str, str | None, str]:
        """Add `text`. Returns (text released before any match, matched pattern or None, text after it).

        Without a match, the longest tail that could still begin a pattern stays buffered.
        """
        buffer = self._buffer + text
        hits = [(buffer.find(p), p) for p in self.patterns if p in buffer]
        if hits:
            index, pattern = min(hits, key=lambda hit: (hit[0], -len(hit[1])))
            self._buffer = ""
            return buffer[:index], pattern, buffer[index + len(pattern) :]
        keep = max((n for p in self.patterns for n in range(1, len(p)) if buffer.endswith(p[:n])), default=0)
        self._buffer = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], None, ""

    def flush(self) -> str:
        """Release whatever is held back (the text ended without completing a pattern)."""
        text, self._buffer = self._buffer, ""
        return text


class Phase(Enum):
    BEFORE = "before"  # the model may still open a reasoning block
    REASONING = "reasoning"
    ANSWER = "answer"


class ReasoningSplitter:
    """Routes generated text to the reasoning or the answer channel at the model's think markers.

    Whitespace between the markers and the text they frame is not part of either channel.
    """

    def __init__(self, start: str, end: str, phase: Phase) -> None:
        self.start, self.end = start, end
        self.phase = phase
        self._pending = ""  # BEFORE: text that may yet turn out to open a reasoning block
        self._end_matcher = HoldbackMatcher([end])
        self._answer_started = False
        self._reasoning_started = False

    def feed(self, text: str) -> list[tuple[Phase, str]]:
        out: list[tuple[Phase, str]] = []
        while text:
            if self.phase is Phase.BEFORE:
                self._pending += text
                stripped = self._pending.lstrip()
                if stripped.startswith(self.start):
                    self.phase, text = Phase.REASONING, stripped[len(self.start) :]
                elif self.start.startswith(stripped):
                    return out
                else:
                    self.phase, text = Phase.ANSWER, self._pending
                self._pending = ""
            elif self.phase is Phase.REASONING:
                released, match, rest = self._end_matcher.feed(text)
                self._emit(out, Phase.REASONING, released)
                if match is None:
                    return out
                self.phase, text = Phase.ANSWER, rest
            else:
                self._emit(out, Phase.ANSWER, text)
                return out
        return out

    def end_reasoning(self) -> list[tuple[Phase, str]]:
        """Close the reasoning block from outside (the budget ran out): held text is reasoning."""
        out: list[tuple[Phase, str]] = []
        if self.phase is Phase.REASONING:
            self._emit(out, Phase.REASONING, self._end_matcher.flush())
        self.phase = Phase.ANSWER
        return out

    def flush(self) -> list[tuple[Phase, str]]:
        out: list[tuple[Phase, str]] = []
        if self.phase is Phase.BEFORE:
            self._emit(out, Phase.ANSWER, self._pending)
            self._pending = ""
        elif self.phase is Phase.REASONING:
            self._emit(out, Phase.REASONING, self._end_matcher.flush())
        return out

    def _emit(self, out: list[tuple[Phase, str]], phase: Phase, text: str) -> None:
        # leading whitespace of each channel is framing ("<think>\n", "</think>\n\n"), not text
        if phase is Phase.ANSWER and not self._answer_started:
            text = text.lstrip()
            self._answer_started = bool(text)
        if phase is Phase.REASONING and not self._reasoning_started:
            text = text.lstrip()
            self._reasoning_started = bool(text)
        if text:
            out.append((phase, text))
