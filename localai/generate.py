"""The token loop: prefill a prompt once, then sample one token at a time, streaming events.

The loop (`generate`) reads top to bottom; what the answer holds so far (texts by phase, stop strings,
the think block) is an `_Answer`, so no state is shared through closures.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence

import numpy as np

from localai.backends.base import Backend
from localai.errors import BackendError
from localai.events import ContentDelta, Event, Final, ReasoningDelta, Timings, Usage
from localai.guide import AnswerGuide
from localai.options import ChatOptions
from localai.package import ThinkTokens
from localai.reasoning import BudgetController, default_grace, end_of_thinking_text
from localai.sampling import Sampler
from localai.textstream import HoldbackMatcher, Phase, ReasoningSplitter
from localai.turn_state import TurnStates, prefill

TokenChooser = Callable[[np.ndarray, Sequence[int]], int]  # (logits, context so far) -> next token


def generate(
    backend: Backend,
    prompt: Sequence[int],
    opts: ChatOptions,
    *,
    markers: ThinkTokens | None,
    phase: Phase,
    stop_tokens: frozenset[int] = frozenset(),
    sampler: TokenChooser | None = None,
    cancel: threading.Event | None = None,
    turn_states: TurnStates | None = None,
    boundary: int | None = None,
    guide: AnswerGuide | None = None,
) -> Iterator[Event]:
    """Prefill `prompt`, then sample until an end-of-turn token, a stop string, `opts.max_tokens` or a full
    context. `phase`: where generation starts (before, inside or after a think block).
    With `turn_states`, the prefill starts from the snapshot holding the longest prefix of `prompt` and
    snapshots the state after its first `boundary` tokens (see localai/turn_state.py). `sampler` replaces
    the one built from `opts.sampling` (scripted tests). `guide` constrains the answer (never the thought):
    before each answer token it masks the logits, and a complete constrained answer ends generation ("stop").
    Setting `cancel` (from any thread) ends the request at the next token ("cancelled"); the texts so far
    are in the final event."""
    started = time.perf_counter()
    sampler = sampler or Sampler(opts.sampling)
    answer = _Answer(opts.stop, ReasoningSplitter(markers.start, markers.end, phase) if markers else None)
    budget = BudgetController(opts.reasoning_budget, _grace(opts))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    context, finish, reasoning_tokens = list(prompt), "length", 0
    steering = _Steering(guide, answer, _single_token(backend, markers.start) if guide is not None and markers else ())
    logits, cached = prefill(backend, prompt, turn_states, boundary)
    clock = _Clock(started, time.perf_counter())
    while clock.generated < opts.max_tokens:
        if cancel is not None and cancel.is_set():
            finish = "cancelled"
            break
        if not np.isfinite(logits.max()):
            raise BackendError("the model produced non-finite logits (NaN or infinity)")
        token = sampler(steering.allowed(logits), context)
        if backend.is_end_of_generation(token) or token in stop_tokens:
            finish = "stop"
            break
        clock.token()
        context.append(token)
        text = decoder.decode(backend.token_bytes(token))
        was_thinking = answer.thinking
        yield from answer.add(text)
        if answer.stopped or steering.completed(token, text, was_thinking):  # a stop string, or a whole answer
            finish = "stop"
            break
        to_eval = [token]
        if was_thinking and answer.thinking:
            reasoning_tokens += 1
            if budget.should_end(text) and markers is not None:
                to_eval += yield from _end_thought(backend, answer, decoder, markers)
        if backend.n_past + len(to_eval) > backend.n_ctx:
            break
        logits = backend.eval(to_eval)
        context += to_eval[1:]
    yield from answer.close()
    yield Final(content=answer.text(Phase.ANSWER), reasoning=answer.text(Phase.REASONING), finish_reason=finish,
                usage=Usage(len(prompt), reasoning_tokens, clock.generated),
                timings=clock.timings(len(prompt) - cached), tokens=context[len(prompt) :], cached_tokens=cached)


def _end_thought(backend: Backend, answer: _Answer, decoder: codecs.IncrementalDecoder,
                 markers: ThinkTokens) -> Generator[Event, None, list[int]]:
    """The reasoning budget is spent: the think block ends in the answer's text, and the tokens that end it
    are what the model reads next (returned)."""
    yield from answer.end_thought()
    decoder.reset()  # bytes of a character the cut thought never finished are not text
    return backend.tokenize(end_of_thinking_text(markers), add_bos=False, special=True)


def _single_token(backend: Backend, text: str) -> tuple[int, ...]:
    """The id of `text` if it is one token (as the think marker usually is), else nothing."""
    tokens = backend.tokenize(text, add_bos=False, special=True)
    return tuple(tokens) if len(tokens) == 1 else ()


def _grace(opts: ChatOptions) -> int:
    """Tokens allowed after the budget to finish the line: the request's, else a tenth of the budget."""
    if opts.reasoning_grace is not None:
        return opts.reasoning_grace
    return default_grace(opts.reasoning_budget) if opts.reasoning_budget else 0


class _Answer:
    """The answer so far: its text by phase past the stop-string matchers (which hold back what may be the
    start of a stop string), the think block's splitter, and whether a stop string ended it."""

    def __init__(self, stop: tuple[str, ...], splitter: ReasoningSplitter | None) -> None:
        self.splitter = splitter
        self.stops = {Phase.REASONING: HoldbackMatcher(stop), Phase.ANSWER: HoldbackMatcher(stop)}
        self.texts: dict[Phase, list[str]] = {Phase.REASONING: [], Phase.ANSWER: []}
        self.stopped = False

    @property
    def thinking(self) -> bool:
        return self.splitter is not None and self.splitter.phase is Phase.REASONING

    @property
    def before_thought(self) -> bool:
        """Nothing decided yet: the model may still open a think block."""
        return self.splitter is not None and self.splitter.phase is Phase.BEFORE

    def text(self, phase: Phase) -> str:
        return "".join(self.texts[phase])

    def add(self, text: str) -> Iterator[Event]:
        """A decoded piece of the model's output; leaving the think block releases what it held back."""
        was_thinking = self.thinking
        yield from self._emit(self.splitter.feed(text) if self.splitter else [(Phase.ANSWER, text)])
        if was_thinking and not self.thinking:
            yield from self._flush_reasoning()

    def end_thought(self) -> Iterator[Event]:
        """The reasoning budget is spent: the think block ends here."""
        assert self.splitter is not None
        yield from self._emit(self.splitter.end_reasoning())
        yield from self._flush_reasoning()

    def close(self) -> Iterator[Event]:
        """Generation ended: what the splitter and the matchers still hold, unless a stop string ended it."""
        if self.stopped:
            return
        yield from self._emit(self.splitter.flush() if self.splitter else [])
        yield from self._flush_reasoning()
        held = self.stops[Phase.ANSWER].flush()
        if held:
            self.texts[Phase.ANSWER].append(held)
            yield ContentDelta(held)

    def _emit(self, pieces: list[tuple[Phase, str]]) -> Iterator[Event]:
        for phase, text in pieces:
            if self.stopped:
                return
            if phase is Phase.ANSWER:  # the thought is over: what it held back comes first
                yield from self._flush_reasoning()
            released, match, _ = self.stops[phase].feed(text)
            if released:
                self.texts[phase].append(released)
                yield ReasoningDelta(released) if phase is Phase.REASONING else ContentDelta(released)
            self.stopped = match is not None

    def _flush_reasoning(self) -> Iterator[Event]:
        held = self.stops[Phase.REASONING].flush()
        if held and not self.stopped:
            self.texts[Phase.REASONING].append(held)
            yield ReasoningDelta(held)


class _Steering:
    """A guide where it applies: the answer. Inside the thought only ending the turn is forbidden; before
    anything is decided the model may still open a thought (`opens_thought`). Without a guide, nothing."""

    def __init__(self, guide: AnswerGuide | None, answer: _Answer, opens_thought: tuple[int, ...]) -> None:
        self.guide, self.answer, self.opens_thought = guide, answer, opens_thought

    def allowed(self, logits: np.ndarray) -> np.ndarray:
        """`logits` with what the guide forbids at -inf."""
        if self.guide is None:
            return logits
        if self.answer.thinking:
            return self.guide.restrict_thought(logits)
        return self.guide.restrict(logits, self.opens_thought if self.answer.before_thought else ())

    def completed(self, token: int, text: str, was_thinking: bool) -> bool:
        """Feed an answer token to the guide; True once the constrained answer is complete."""
        if self.guide is None or was_thinking or self.answer.thinking:
            return False
        self.guide.advance(token, text)
        return self.guide.finished


class _Clock:
    """When the request started, finished its prefill and produced its first token; tokens since."""

    def __init__(self, started: float, prefilled: float) -> None:
        self.started, self.prefilled = started, prefilled
        self.first_token: float | None = None
        self.generated = 0

    def token(self) -> None:
        self.generated += 1
        self.first_token = self.first_token or time.perf_counter()

    def timings(self, processed: int) -> Timings:
        """`processed`: prompt tokens the prefill computed (not restored from a snapshot)."""
        finished = time.perf_counter()
        decode_time = finished - self.first_token if self.first_token else 0.0
        return Timings(
            ttft_ms=round((self.first_token - self.started) * 1000, 3) if self.first_token else None,
            prefill_tokens_per_s=_rate(processed, self.prefilled - self.started),
            decode_tokens_per_s=_rate(self.generated - 1, decode_time),
            total_ms=round((finished - self.started) * 1000, 3),
        )


def _rate(tokens: int, seconds: float) -> float | None:
    return round(tokens / seconds, 2) if tokens > 0 and seconds > 0 else None
