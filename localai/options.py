"""One request's settings (`ChatOptions`): made once from a package's generation defaults, then changed
with `dataclasses.replace` or `ChatOptions.changed`; every value is checked when an instance is made."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from localai.errors import SettingError
from localai.sampling import SamplingParams
from localai.structured import Constraint, json_schema
from localai.tools.spec import Tool, check_choice, tools_of
from localai.units import shown

DEFAULT_MAX_TOKENS = 1024
# used when a package carries no generation defaults of its own
DEFAULT_SAMPLING = {"temperature": 0.7, "top_p": 0.95}
MAX_STOPS, MAX_STOP_CHARS = 8, 256
SAMPLING_KEYS = tuple(f.name for f in dataclasses.fields(SamplingParams))
ContextPolicy = Literal["drop_oldest", "error"]


@dataclass(frozen=True)
class ChatOptions:
    """One request's settings. `think` None: the template's default; `reasoning_budget` None is unlimited
    and 0 is the same as thinking off; `reasoning_grace` None: max(8, budget / 10). `constraint`: what
    the answer must match (localai/structured.py); `tools` the model may call and `tool_choice` ("auto",
    "none": the model is not told of them, "required", or one tool's name: a call to it); with
    `parallel_tool_calls` False a forced answer holds one call."""

    think: bool | None = None
    reasoning_budget: int | None = None
    reasoning_grace: int | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    context_policy: ContextPolicy = "drop_oldest"
    constraint: Constraint | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"
    parallel_tool_calls: bool = True

    def __post_init__(self) -> None:
        # whole numbers only: these come from command lines, requests and a package's generation_config.json
        if not _whole(self.max_tokens) or self.max_tokens < 1:
            raise SettingError(f"max_tokens must be a whole number of at least 1, got {shown(self.max_tokens)}")
        for name in ("reasoning_budget", "reasoning_grace"):
            value = getattr(self, name)
            if value is not None and (not _whole(value) or value < 0):
                raise SettingError(f"{name} must be a whole number >= 0, got {shown(value)}")
        if self.think not in (None, True, False):
            raise SettingError(f"think must be true, false or unset, got {shown(self.think)}")
        if not isinstance(self.sampling, SamplingParams):
            raise SettingError(f"sampling must be SamplingParams, got {shown(self.sampling)}")
        if not isinstance(self.stop, tuple) or not all(isinstance(text, str) for text in self.stop):
            raise SettingError(f"stop must be a tuple of strings, got {shown(self.stop)}")
        # each token is checked against every stop string's prefixes: bounded, so a request cannot stall it
        if len(self.stop) > MAX_STOPS or any(len(text) > MAX_STOP_CHARS for text in self.stop):
            raise SettingError(f"stop takes at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters")
        if self.context_policy not in ("drop_oldest", "error"):
            raise SettingError(f"context_policy must be 'drop_oldest' or 'error', got {shown(self.context_policy)}")
        if self.constraint is not None and not isinstance(self.constraint, Constraint):
            raise SettingError(f"constraint must be a Constraint, got {shown(self.constraint)}")
        if not isinstance(self.tools, tuple) or not all(isinstance(tool, Tool) for tool in self.tools):
            raise SettingError(f"tools must be a tuple of Tool, got {shown(self.tools)}")
        check_choice(self.tool_choice, self.tools)
        if not isinstance(self.parallel_tool_calls, bool):
            raise SettingError(f"parallel_tool_calls must be true or false, got {shown(self.parallel_tool_calls)}")

    @property
    def offered_tools(self) -> tuple[Tool, ...]:
        """The tools the model is told of: none when tool_choice is "none"."""
        return () if self.tool_choice == "none" else self.tools

    @property
    def effective_think(self) -> bool | None:
        return False if self.reasoning_budget == 0 else self.think

    def changed(self, **changes: Any) -> ChatOptions:
        """A copy with `changes`, by name: the sampling ones (temperature, top_p, top_k, min_p,
        repetition_penalty, seed) change `sampling`; `stop` may be one string; `tools` may be OpenAI's tool
        objects; `constraint` may be a JSON schema (a dict). None is a value here (an unlimited budget, the
        template's thinking default), never "leave as is"."""
        unknown = sorted(changes.keys() - SETTING_NAMES)
        if unknown:
            names = ", ".join(sorted(SETTING_NAMES))
            raise SettingError(f"unknown setting {shown(unknown[0])}; the settings are {names}")
        sampling = {k: changes.pop(k) for k in SAMPLING_KEYS if k in changes}
        if isinstance(changes.get("stop"), str | list):
            changes["stop"] = tuple([changes["stop"]] if isinstance(changes["stop"], str) else changes["stop"])
        if "tools" in changes:
            changes["tools"] = tools_of(changes["tools"])
        if isinstance(changes.get("constraint"), dict):
            changes["constraint"] = json_schema(changes["constraint"])
        return dataclasses.replace(self, sampling=dataclasses.replace(self.sampling, **sampling), **changes)


SETTING_NAMES = frozenset({f.name for f in dataclasses.fields(ChatOptions)} - {"sampling"} | set(SAMPLING_KEYS))


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def given(**settings: Any) -> dict[str, Any]:
    """The settings that are not None: what a command line or a request body set (for `changed`, where
    None is a value)."""
    return {name: value for name, value in settings.items() if value is not None}


def package_options(defaults: dict[str, Any]) -> ChatOptions:
    """The options a package's generation defaults (its generation_config.json, as the manifest keeps it)
    make: where every request on that package starts."""
    if defaults.get("do_sample") is False:  # transformers: greedy whatever the temperature says
        defaults = {**defaults, "temperature": 0.0}
    elif "temperature" not in defaults:
        defaults = {**DEFAULT_SAMPLING, **defaults}
    sampling = {k: defaults[k] for k in SAMPLING_KEYS if defaults.get(k) is not None}
    changes: dict[str, Any] = {**sampling}
    if defaults.get("max_new_tokens") is not None:
        changes["max_tokens"] = defaults["max_new_tokens"]
    try:
        return ChatOptions().changed(**changes)
    except SettingError as exc:
        raise SettingError(f"the package's generation defaults: {exc}") from None


def turn_settings(opts: ChatOptions) -> dict[str, Any]:
    """What a user set for one turn, as saved chats and exported metrics record it (think None: the
    template's default)."""
    return {"think": opts.effective_think, "reasoning_budget": opts.reasoning_budget,
            "temperature": opts.sampling.temperature, "top_p": opts.sampling.top_p, "max_tokens": opts.max_tokens}
