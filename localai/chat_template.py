"""Render chat templates (Jinja2, as in Hugging Face tokenizers) in a sandbox.

A template inside a downloaded model is untrusted input: it runs in Jinja2's immutable sandbox, which
blocks attribute access to Python internals and mutation of passed-in objects.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localai.errors import LocalAIError

# Used when a model ships no template: plain role-prefixed turns, clearly not any model's own format.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


class ChatTemplateError(LocalAIError):
    """The model's chat template failed to render."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"chat template refused the conversation: {message}")


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    # transformers' tojson: no HTML escaping, non-ASCII kept
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


_ENV = _environment()


def render(template: str, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
           **variables: Any) -> str:
    """Render `messages` with `template`; extra `variables` (bos_token, enable_thinking, ...) are passed in."""
    try:
        compiled = _ENV.from_string(template)
        return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **variables)
    except ChatTemplateError:
        raise
    except TemplateError as exc:
        raise ChatTemplateError(f"chat template failed: {exc}") from exc
