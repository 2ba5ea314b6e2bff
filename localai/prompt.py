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
from localai.tools.spec import Tool


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
    context at most) by dropping the oldest turns while the policy allows. The fewest turns that must go
    are found by bisection, so a long history costs a few renders, not one per dropped turn."""
    reserve = min(opts.max_tokens, n_ctx // 4)
    drops = _drops(messages) if opts.context_policy == "drop_oldest" else [0]

    def prompt(k: int) -> Prompt:
        """The prompt with the oldest k turns dropped (they follow the system prompt, if there is one)."""
        head = 1 if messages and messages[0].get("role") == "system" else 0
        kept = messages[:head] + messages[head + drops[k] :]
        text, history, phase = render(fmt, kept, opts.effective_think if fmt.thinking else None, opts.offered_tools)
        return Prompt(fmt.tokenize_prompt(text), history, phase, drops[k])

    def roomy(candidate: Prompt) -> bool:
        return len(candidate.tokens) + reserve <= n_ctx

    first = prompt(0)
    if roomy(first):
        return first
    most = prompt(len(drops) - 1) if len(drops) > 1 else first
    if not roomy(most):
        if len(most.tokens) < n_ctx:  # no room for the whole answer reserve, but the prompt itself fits
            return most
        raise ContextOverflowError(
            f"the conversation needs {len(most.tokens)} tokens but the context holds {n_ctx}; "
            "shorten it or load the model with a larger context"
        )
    low, high, best = 1, len(drops) - 1, most
    while low < high:  # more dropped turns never make the prompt longer
        middle = (low + high) // 2
        if roomy(candidate := prompt(middle)):
            best, high = candidate, middle
        else:
            low = middle + 1
    return best


def _drops(messages: list[dict[str, Any]]) -> list[int]:
    """How many messages dropping the oldest 0, 1, 2, ... turns removes, up to all that may go."""
    current, drops = list(messages), [0]
    while removed := _drop_oldest_turn(current):
        drops.append(drops[-1] + removed)
    return drops


def render(fmt: ChatFormat, messages: list[dict[str, Any]], think: bool | None,
           tools: tuple[Tool, ...] = ()) -> tuple[str, str, Phase]:
    """The prompt text; the conversation as history (the prompt without the generation prompt, "" when the
    template does not write it as a prefix); and where generation starts (before, inside or after a think
    block). `tools` go to the template's `tools` variable (left undefined when there are none, as
    transformers leaves it)."""
    markers = fmt.thinking
    messages, variables = thinking_messages(fmt.template or "", messages, think)
    if tools:
        variables["tools"] = [tool.to_openai() for tool in tools]
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
