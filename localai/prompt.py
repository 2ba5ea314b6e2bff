"""A chat request's prompt: the conversation rendered by the model's template, thinking switched on or off,
and fitted to the context by leaving out the oldest turns (or refused, as the request's policy says)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localai.chat_format import ChatFormat
from localai.errors import LocalAIError
from localai.options import ChatOptions
from localai.reasoning import prompt_phase, thinking_messages, thinking_switch
from localai.textstream import Phase


class ContextOverflowError(LocalAIError):
    """The conversation does not fit the context."""


@dataclass(frozen=True)
class Prompt:
    """A request's prompt: its tokens, the conversation before it as text ("" when the template does not
    write it as a prefix), where generation starts, and how many of the oldest messages were left out."""

    tokens: list[int]
    history: str
    phase: Phase
    dropped: int


def fit(fmt: ChatFormat, messages: list[dict[str, Any]], opts: ChatOptions, n_ctx: int) -> Prompt:
    """The prompt of `messages` in a context of `n_ctx` tokens, leaving room for an answer (a quarter of the
    context at most) by dropping the oldest turns while the policy allows."""
    messages = list(messages)
    reserve = min(opts.max_tokens, n_ctx // 4)
    dropped = 0
    while True:
        text, history, phase = render(fmt, messages, opts.effective_think if fmt.thinking else None)
        tokens = fmt.tokenize_prompt(text)
        fits = len(tokens) < n_ctx
        if len(tokens) + reserve <= n_ctx or (fits and opts.context_policy == "error"):
            return Prompt(tokens, history, phase, dropped)
        removed = _drop_oldest_turn(messages) if opts.context_policy == "drop_oldest" else 0
        if not removed and fits:
            return Prompt(tokens, history, phase, dropped)
        if not removed:
            raise ContextOverflowError(
                f"the conversation needs {len(tokens)} tokens but the context holds {n_ctx}; "
                "shorten it or load the model with a larger context"
            )
        dropped += removed


def render(fmt: ChatFormat, messages: list[dict[str, Any]], think: bool | None) -> tuple[str, str, Phase]:
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
