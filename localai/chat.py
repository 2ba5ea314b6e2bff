"""The chat engine's entry points: a conversation's answer (`chat`) or a plain completion (`complete`), as
a stream of events (localai/events.py), on any backend with the model's ChatFormat.

A request's prompt is made in localai/prompt.py (template, thinking switch, fitting the context), its
settings in localai/options.py, and the token loop is localai/generate.py. Everything works on token ids
and logits through the backend protocol, so it behaves the same on every backend.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from localai import tools
from localai.backends.base import Backend
from localai.chat_format import ChatFormat
from localai.constrain import answer_guide
from localai.errors import LocalAIError
from localai.events import Event, Notice
from localai.generate import TokenChooser, generate
from localai.options import ChatOptions
from localai.prompt import ContextOverflowError, fit
from localai.textstream import Phase
from localai.tools.calls import with_tool_calls
from localai.turn_state import TurnStates


def chat(backend: Backend, fmt: ChatFormat, messages: list[dict[str, Any]], opts: ChatOptions, *,
         turn_states: TurnStates | None = None, sampler: TokenChooser | None = None,
         cancel: threading.Event | None = None) -> Iterator[Event]:
    """Answer the conversation `messages` (the last one from the user or a tool) with the model `backend`
    runs, written in `fmt`. `turn_states`: snapshots of earlier turns to start from (localai/turn_state.py).
    With tools offered, the calls the model writes come out as ToolCall events (localai/tools/)."""
    yield from _format_notices(fmt, opts)
    tool_format = tools.detect(fmt.template) if opts.offered_tools else None
    guide = answer_guide(backend, fmt, opts, tool_format)
    prompt = fit(fmt, messages, opts, backend.n_ctx)
    if prompt.dropped:
        yield Notice(f"dropped the {prompt.dropped} oldest message(s) to fit the context of {backend.n_ctx} tokens",
                     dropped_messages=prompt.dropped)
    boundary = None
    if turn_states is not None and prompt.history:
        history = fmt.tokenize_prompt(prompt.history)
        boundary = len(history) if prompt.tokens[: len(history)] == history else None  # a token-level prefix only
    events = generate(backend, prompt.tokens, opts, markers=fmt.thinking, phase=prompt.phase,
                      stop_tokens=fmt.end_of_turn_ids, sampler=sampler, cancel=cancel, turn_states=turn_states,
                      boundary=boundary, guide=guide)
    yield from with_tool_calls(events, tool_format, opts.offered_tools) if tool_format else events


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
    """Plain completion of `text`: no template, no reasoning, no tools; `opts.constraint` applies."""
    if opts.tools:
        raise LocalAIError("a plain completion takes no tools: they go through the chat template")
    prompt = fmt.tokenize_raw(text)
    if not prompt:
        raise LocalAIError("the prompt is empty")
    if len(prompt) >= backend.n_ctx:
        raise ContextOverflowError(f"the prompt needs {len(prompt)} tokens but the context holds {backend.n_ctx}")
    yield from generate(backend, prompt, opts, markers=None, phase=Phase.ANSWER, stop_tokens=fmt.end_of_turn_ids,
                        sampler=sampler, cancel=cancel, guide=answer_guide(backend, fmt, opts, None))
