"""One request's settings (`ChatOptions`), made from a package's generation defaults and what the caller set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from localai.errors import LocalAIError
from localai.sampling import SamplingParams

DEFAULT_MAX_TOKENS = 1024
# used when a package carries no generation defaults of its own
DEFAULT_SAMPLING = {"temperature": 0.7, "top_p": 0.95}
ContextPolicy = Literal["drop_oldest", "error"]


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
        # whole numbers only: these come from command lines and from a package's generation_config.json
        if not _whole(self.max_tokens) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a whole number of at least 1, got {self.max_tokens!r}")
        for name in ("reasoning_budget", "reasoning_grace"):
            value = getattr(self, name)
            if value is not None and (not _whole(value) or value < 0):
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.think not in (None, True, False):
            raise ValueError(f"think must be true, false or unset, got {self.think!r}")
        if not all(isinstance(text, str) for text in self.stop):
            raise ValueError("stop strings must be strings")
        if self.context_policy not in ("drop_oldest", "error"):
            raise ValueError(f"context_policy must be 'drop_oldest' or 'error', got {self.context_policy!r}")

    @property
    def effective_think(self) -> bool | None:
        return False if self.reasoning_budget == 0 else self.think


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        given["max_tokens"] = defaults["max_new_tokens"]  # checked with the rest, below
    if "stop" in given:
        given["stop"] = tuple([given["stop"]] if isinstance(given["stop"], str) else given["stop"])
    try:
        return ChatOptions(sampling=SamplingParams(**sampling), **given)
    except (TypeError, ValueError) as exc:
        raise LocalAIError(str(exc)) from exc
