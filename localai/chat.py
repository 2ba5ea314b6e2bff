"""The chat engine: prompt rendering, thinking control, the reasoning budget, stop strings, streaming.

Everything here works on token ids and logits through the backend protocol, so it behaves the same on
every backend. One request is a generator of events: reasoning and content deltas (which concatenate
exactly to the final texts), notices, and one final event with the finish reason, usage and timings.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from localai.errors import BackendError, LocalAIError
from localai.reasoning import (
    BudgetController,
    default_grace,
    end_of_thinking_text,
    prompt_phase,
    thinking_messages,
    thinking_switch,
)
from localai.sampling import Sampler, SamplingParams
from localai.textstream import HoldbackMatcher, Phase, ReasoningSplitter
from localai.turn_state import TurnStates, prefill

if TYPE_CHECKING:
    from localai.backends.base import Backend
    from localai.chat_format import ChatFormat

DEFAULT_MAX_TOKENS = 1024
# used when a package carries no generation defaults of its own
DEFAULT_SAMPLING = {"temperature": 0.7, "top_p": 0.95}
ContextPolicy = Literal["drop_oldest", "error"]
TokenChooser = Callable[[np.ndarray, Sequence[int]], int]  # (logits, context so far) -> next token


class ContextOverflowError(LocalAIError):
    """The conversation does not fit the context."""


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class Notice:
    """Something the user should see once (fallback template, dropped turns, ignored settings).

    `dropped_messages`: how many of the oldest messages (after the system prompt) this request left out
    to fit the context; a `Conversation` forgets them too.
    """

    text: str
    dropped_messages: int = 0


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    reasoning_tokens: int  # generated inside the think block (part of completion_tokens)
    completion_tokens: int  # every sampled token; the end-of-thinking text the engine adds is not one


@dataclass(frozen=True)
class Timings:
    ttft_ms: float | None
    prefill_tokens_per_s: float | None
    decode_tokens_per_s: float | None
    total_ms: float


@dataclass(frozen=True)
class Final:
    content: str
    reasoning: str
    # "stop": end-of-turn token or stop string; "length": max_tokens or context full; "cancelled"
    finish_reason: str
    usage: Usage
    timings: Timings
    tokens: list[int] = field(default_factory=list)  # what followed the prompt in the context, in order
    cached_tokens: int = 0  # prompt tokens restored from a turn snapshot instead of processed

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape of `localai run --json` (content, reasoning, finish_reason, usage,
        timings)."""
        data = asdict(self)
        del data["tokens"], data["cached_tokens"]
        return data


Event = ReasoningDelta | ContentDelta | Notice | Final


@dataclass(frozen=True)
class ChatOptions:
    """One request's settings. `reasoning_budget` None is unlimited; 0 is the same as thinking off."""

    think: bool | None = None
    reasoning_budget: int | None = None
    reasoning_grace: int | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    context_policy: ContextPolicy = "drop_oldest"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.reasoning_budget is not None and self.reasoning_budget < 0:
            raise ValueError(f"reasoning_budget must be >= 0, got {self.reasoning_budget}")
        if self.reasoning_grace is not None and self.reasoning_grace < 0:
            raise ValueError(f"reasoning_grace must be >= 0, got {self.reasoning_grace}")
        if self.context_policy not in ("drop_oldest", "error"):
            raise ValueError(f"context_policy must be 'drop_oldest' or 'error', got {self.context_policy!r}")

    @property
    def effective_think(self) -> bool | None:
        return False if self.reasoning_budget == 0 else self.think


def turn_settings(opts: ChatOptions) -> dict[str, Any]:
    """What a user set for one turn, as saved chats and exported metrics record it (think None: the
    template's default)."""
    return {"think": opts.effective_think, "reasoning_budget": opts.reasoning_budget,
            "temperature": opts.sampling.temperature, "top_p": opts.sampling.top_p, "max_tokens": opts.max_tokens}


def options(defaults: dict[str, Any], **overrides: Any) -> ChatOptions:
    """ChatOptions from keyword overrides (None = not given) over a package's generation defaults."""
    given = {k: v for k, v in overrides.items() if v is not None}
    sampling_keys = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed")
    if defaults.get("do_sample") is False:  # transformers: greedy whatever the temperature says
        defaults = {**defaults, "temperature": 0.0}
    elif "temperature" not in defaults:
        defaults = {**DEFAULT_SAMPLING, **defaults}
    sampling = {k: given.pop(k, defaults.get(k)) for k in sampling_keys}
    sampling = {k: v for k, v in sampling.items() if v is not None}
    if "max_tokens" not in given and defaults.get("max_new_tokens"):
        given["max_tokens"] = int(defaults["max_new_tokens"])
    if "stop" in given:
        given["stop"] = tuple([given["stop"]] if isinstance(given["stop"], str) else given["stop"])
    try:
        return ChatOptions(sampling=SamplingParams(**sampling), **given)
    except (TypeError, ValueError) as exc:
        raise LocalAIError(str(exc)) from exc


def chat(backend: Backend, fmt: ChatFormat, messages: list[dict[str, Any]], opts: ChatOptions, *,
         turn_states: TurnStates | None = None, sampler: TokenChooser | None = None,
         cancel: threading.Event | None = None) -> Iterator[Event]:
    """Answer the conversation `messages` (the last one from the user) with the model `backend` runs, written
    in `fmt`. `turn_states`: snapshots of earlier turns to start from (localai/turn_state.py)."""
    yield from _format_notices(fmt, opts)
    messages = list(messages)
    n_ctx = backend.n_ctx
    # dropping turns should leave room for an answer, not just for the prompt
    reserve = min(opts.max_tokens, n_ctx // 4)
    dropped = 0
    while True:
        prompt_text, history_text, phase = _render(fmt, messages, opts.effective_think if fmt.thinking else None)
        prompt = fmt.tokenize_prompt(prompt_text)
        fits = len(prompt) < n_ctx
        if len(prompt) + reserve <= n_ctx or (fits and opts.context_policy == "error"):
            break
        removed = _drop_oldest_turn(messages) if opts.context_policy == "drop_oldest" else 0
        if not removed and fits:
            break
        if not removed:
            raise ContextOverflowError(
                f"the conversation needs {len(prompt)} tokens but the context holds {n_ctx}; "
                "shorten it or load the model with a larger context"
            )
        dropped += removed
    if dropped:
        yield Notice(f"dropped the {dropped} oldest message(s) to fit the context of {n_ctx} tokens",
                     dropped_messages=dropped)
    boundary = None
    if turn_states is not None and history_text:
        history = fmt.tokenize_prompt(history_text)
        boundary = len(history) if prompt[: len(history)] == history else None  # a token-level prefix only
    yield from generate(backend, prompt, opts, markers=fmt.thinking, phase=phase,
                        stop_tokens=fmt.end_of_turn_ids, sampler=sampler, cancel=cancel,
                        turn_states=turn_states, boundary=boundary)


def _format_notices(fmt: ChatFormat, opts: ChatOptions) -> Iterator[Notice]:
    """What the model cannot do that the request asks of it, once per loaded model."""
    if fmt.thinking is None and (opts.think is not None or opts.reasoning_budget is not None):
        notice = f"{fmt.name} has no reasoning markers; thinking settings do not apply"
        if fmt.first_time(notice):
            yield Notice(notice)
    if fmt.template is None:
        notice = f"{fmt.name} has no chat template; using a plain fallback template"
        if fmt.first_time(notice):
            yield Notice(notice)


def complete(backend: Backend, fmt: ChatFormat, text: str, opts: ChatOptions, *, sampler: TokenChooser | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
    """Plain completion of `text`: no template, no reasoning."""
    prompt = fmt.tokenize_raw(text)
    if not prompt:
        raise LocalAIError("the prompt is empty")
    if len(prompt) >= backend.n_ctx:
        raise ContextOverflowError(f"the prompt needs {len(prompt)} tokens but the context holds {backend.n_ctx}")
    yield from generate(backend, prompt, opts, markers=None, phase=Phase.ANSWER,
                        stop_tokens=fmt.end_of_turn_ids, sampler=sampler, cancel=cancel)


def _render(fmt: ChatFormat, messages: list[dict[str, Any]], think: bool | None) -> tuple[str, str, Phase]:
    """The prompt text; the conversation as history (the prompt without the generation prompt, "" when the
    template does not write it as a prefix); and where generation starts (before, inside or after a think
    block)."""
    markers = fmt.thinking
    messages, variables = thinking_messages(fmt.template or "", messages, think)
    text = fmt.render(messages, **variables)
    history = fmt.render(messages, add_generation_prompt=False, **variables)
    if not (text.startswith(history) and len(text) > len(history)):
        history = ""
    if markers is None:
        return text, history, Phase.ANSWER
    # judge only what the template adds to open the assistant turn: markers inside messages are text
    opening = text[len(history) :]
    extra = thinking_switch(opening, markers, think)
    return text + extra, history, prompt_phase(opening + extra, markers)


def _drop_oldest_turn(messages: list[dict[str, Any]]) -> int:
    """Remove the oldest user turn and its answer (never the system prompt or the last message)."""
    first = 1 if messages and messages[0].get("role") == "system" else 0
    if len(messages) - first <= 1:
        return 0
    end = first + 1
    while end < len(messages) - 1 and messages[end].get("role") != "user":
        end += 1
    del messages[first:end]
    return end - first


def generate(
    backend: Backend,
    prompt: Sequence[int],
    opts: ChatOptions,
    *,
    markers: Any,
    phase: Phase,
    stop_tokens: frozenset[int] = frozenset(),
    sampler: TokenChooser | None = None,
    cancel: threading.Event | None = None,
    turn_states: TurnStates | None = None,
    boundary: int | None = None,
) -> Iterator[Event]:
    """The token loop: prefill `prompt` once, then sample one token at a time.

    With `turn_states`, the prefill starts from the snapshot holding the longest prefix of `prompt`
    and snapshots the state after its first `boundary` tokens (see localai/turn_state.py).

    `sampler` replaces the sampler built from `opts.sampling` (constrained decoding, scripted tests).
    Setting `cancel` (from any thread) ends the request at the next token with finish reason
    "cancelled"; the texts so far are kept in the final event.
    """
    started = time.perf_counter()
    sampler = sampler or Sampler(opts.sampling)
    splitter = ReasoningSplitter(markers.start, markers.end, phase) if markers else None
    stops = {Phase.REASONING: HoldbackMatcher(opts.stop), Phase.ANSWER: HoldbackMatcher(opts.stop)}
    texts: dict[Phase, list[str]] = {Phase.REASONING: [], Phase.ANSWER: []}
    grace = opts.reasoning_grace
    if grace is None:
        grace = default_grace(opts.reasoning_budget) if opts.reasoning_budget else 0
    budget = BudgetController(opts.reasoning_budget, grace)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    context = list(prompt)
    finish, stopped = "length", False
    generated = reasoning_tokens = 0
    first_token_at: float | None = None

    def emit(pieces: list[tuple[Phase, str]]) -> Iterator[Event]:
        nonlocal stopped
        for piece_phase, text in pieces:
            if stopped:
                return
            if piece_phase is Phase.ANSWER:  # the thought is over: what it held back comes first
                yield from flush_reasoning_stops()
            released, match, _ = stops[piece_phase].feed(text)
            if released:
                texts[piece_phase].append(released)
                yield ReasoningDelta(released) if piece_phase is Phase.REASONING else ContentDelta(released)
            stopped = match is not None

    def flush_reasoning_stops() -> Iterator[Event]:
        held = stops[Phase.REASONING].flush()
        if held and not stopped:
            texts[Phase.REASONING].append(held)
            yield ReasoningDelta(held)

    logits, cached = prefill(backend, prompt, turn_states, boundary)
    prefilled_at = time.perf_counter()
    while generated < opts.max_tokens:
        if cancel is not None and cancel.is_set():
            finish = "cancelled"
            break
        if not np.isfinite(logits.max()):
            raise BackendError("the model produced non-finite logits (NaN or infinity)")
        token = sampler(logits, context)
        if backend.is_end_of_generation(token) or token in stop_tokens:
            finish = "stop"
            break
        generated += 1
        first_token_at = first_token_at or time.perf_counter()
        context.append(token)
        text = decoder.decode(backend.token_bytes(token))
        before = splitter.phase if splitter else Phase.ANSWER
        pieces = splitter.feed(text) if splitter else [(Phase.ANSWER, text)]
        after = splitter.phase if splitter else Phase.ANSWER
        yield from emit(pieces)
        if before is Phase.REASONING and after is not Phase.REASONING:
            yield from flush_reasoning_stops()
        if stopped:
            finish = "stop"
            break
        to_eval = [token]
        if before is Phase.REASONING and after is Phase.REASONING:
            reasoning_tokens += 1
            if budget.should_end(text):
                assert splitter is not None and markers is not None
                yield from emit(splitter.end_reasoning())
                yield from flush_reasoning_stops()
                decoder.reset()  # bytes of a character the cut thought never finished are not text
                end_text = backend.tokenize(end_of_thinking_text(markers), add_bos=False, special=True)
                to_eval.extend(end_text)
        if backend.n_past + len(to_eval) > backend.n_ctx:
            break
        logits = backend.eval(to_eval)
        context.extend(to_eval[1:])
    if not stopped:
        tail = splitter.flush() if splitter else []
        yield from emit(tail)
        yield from flush_reasoning_stops()
        held = stops[Phase.ANSWER].flush()
        if held:
            texts[Phase.ANSWER].append(held)
            yield ContentDelta(held)
    finished = time.perf_counter()
    decode_time = finished - first_token_at if first_token_at else 0.0
    yield Final(
        content="".join(texts[Phase.ANSWER]),
        reasoning="".join(texts[Phase.REASONING]),
        finish_reason=finish,
        usage=Usage(len(prompt), reasoning_tokens, generated),
        timings=Timings(
            ttft_ms=round((first_token_at - started) * 1000, 3) if first_token_at else None,
            prefill_tokens_per_s=_rate(len(prompt) - cached, prefilled_at - started),
            decode_tokens_per_s=_rate(generated - 1, decode_time),
            total_ms=round((finished - started) * 1000, 3),
        ),
        tokens=context[len(prompt) :],
        cached_tokens=cached,
    )


def _rate(tokens: int, seconds: float) -> float | None:
    return round(tokens / seconds, 2) if tokens > 0 and seconds > 0 else None


def collect(events: Iterator[Event]) -> Final:
    """Run a request to its end and return the final event."""
    final = None
    for event in events:
        if isinstance(event, Final):
            final = event
    assert final is not None
    return final


