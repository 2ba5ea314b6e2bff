"""Render chat templates (Jinja2, as in Hugging Face tokenizers) in a sandbox.

A template inside a downloaded model is untrusted input: it runs in Jinja2's immutable sandbox, which
blocks attribute access to Python internals and mutation of passed-in objects, with two more limits
against templates that exhaust memory: repeated strings and lists (`*`, `**`) and the rendered text are
capped in size. Any failure inside a template is a `ChatTemplateError`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2.exceptions import SecurityError
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


MAX_OUTPUT_CHARS = 16 * 1024 * 1024  # far beyond any context window
MAX_REPEATED_ITEMS = 1024 * 1024


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                repeated = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if repeated and len(seq) * count > MAX_REPEATED_ITEMS:
                    raise SecurityError("repetition too large")
        return super().call_binop(context, operator, left, right)


def _environment() -> ImmutableSandboxedEnvironment:
    env = _LimitedSandbox(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
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
        pieces, size = [], 0
        for piece in compiled.generate(messages=messages, add_generation_prompt=add_generation_prompt, **variables):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(f"output larger than {MAX_OUTPUT_CHARS} characters")
            pieces.append(piece)
        return "".join(pieces)
    except ChatTemplateError:
        raise
    except Exception as exc:  # the template is foreign code: whatever it raises is its failure
        raise ChatTemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from exc
