"""Reasoning control above the backend: thinking on/off in the prompt, and the token budget.

Models announce thinking in three ways, detected from their chat template:
- Nemotron Nano 2: `/think` or `/no_think` in the system prompt; the template opens the answer turn with
  `<think>\n` or with an empty `<think></think>`;
- Qwen3: the template variable `enable_thinking`;
- anything else: the engine itself prefills an open (`<think>\n`) or empty think block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from localai.package import ThinkTokens
from localai.textstream import Phase

SWITCH_ON, SWITCH_OFF = "/think", "/no_think"


def default_grace(budget: int) -> int:
    """Grace after the budget, to let the thought finish its line: max(8, budget // 10)."""
    return max(8, budget // 10)


@dataclass
class BudgetController:
    """Counts reasoning tokens and says when the thought must end.

    After `budget` tokens the thought ends at the next token that completes a line, and at the latest after
    `grace` more tokens (`grace` 0: exactly at the budget). `budget` None means unlimited.
    """

    budget: int | None
    grace: int = 0
    count: int = 0

    def should_end(self, token_text: str) -> bool:
        """Count one reasoning token (its text); True when the thought must end after it."""
        self.count += 1
        if self.budget is None or self.count < self.budget:
            return False
        return self.grace == 0 or self.count >= self.budget + self.grace or "\n" in token_text


def end_of_thinking_text(markers: ThinkTokens) -> str:
    """What the engine appends to close a thought that ran out of budget."""
    return f"\n{markers.end}\n\n"


def thinking_messages(template: str, messages: list[dict[str, Any]], think: bool | None,
                      ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Messages and template variables that ask the model's own template for thinking on or off."""
    if think is None:
        return messages, {}
    if "enable_thinking" in template:
        return messages, {"enable_thinking": think}
    if SWITCH_OFF in template or SWITCH_ON in template:
        return _with_system_switch(messages, SWITCH_ON if think else SWITCH_OFF), {}
    return messages, {}


_SWITCHES = re.compile(r"(?<!\S)/(?:no_)?think(?!\S)")


def _with_system_switch(messages: list[dict[str, Any]], switch: str) -> list[dict[str, Any]]:
    """The system prompt with `switch` at its end, replacing any switch it had (whole words only)."""
    if messages and messages[0].get("role") == "system":
        content = _SWITCHES.sub("", str(messages[0].get("content") or "")).rstrip()
        system = {**messages[0], "content": f"{content}\n{switch}" if content else switch}
        return [system, *messages[1:]]
    return [{"role": "system", "content": switch}, *messages]


def prompt_phase(prompt: str, markers: ThinkTokens) -> Phase:
    """Where generation starts: inside an open think block, right after a closed one, or before any."""
    opened, closed = prompt.rfind(markers.start), prompt.rfind(markers.end)
    if opened > closed:
        return Phase.REASONING
    if closed >= 0 and prompt.rstrip().endswith(markers.end):
        return Phase.ANSWER
    return Phase.BEFORE


def thinking_switch(prompt: str, markers: ThinkTokens, think: bool | None) -> str:
    """Text to append to a rendered prompt so that thinking is on or off whatever the template did."""
    phase = prompt_phase(prompt, markers)
    if think is False and phase is Phase.REASONING:
        return f"{markers.end}\n\n"
    if think is False and phase is Phase.BEFORE:
        return f"{markers.start}\n{markers.end}\n\n"
    if think is True and phase is Phase.BEFORE:
        return f"{markers.start}\n"
    return ""
