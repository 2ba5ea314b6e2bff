"""Render chat templates (Jinja2, as in Hugging Face tokenizers) in a sandbox.

A template inside a downloaded model is untrusted input. It runs in Jinja2's immutable sandbox, which
blocks attribute access to Python internals and mutation of passed-in objects, and under three more
bounds, each against a way a template was seen to exhaust memory or time:

- **Nothing runs at compile time.** Jinja2 folds constant expressions while compiling, outside every
  runtime check: `{% if false %}{{ 'a'|center(1000000000) }}{% endif %}` took 3.9 GB before one line
  rendered. The optimizer is off and output is never folded (`_RuntimeOnly`).
- **No string, list or number grows past a bound.** Every operation that can build something much
  larger than its inputs is checked before it runs: repetition and concatenation (`*`, `+`, `~`),
  `%` formatting and `str.format` widths, the str methods and filters that pad, join, replace, indent
  or wrap (`_ESTIMATES`), and powers and products of large integers. `lipsum` is gone.
- **A render takes at most `RENDER_SECONDS` and `RENDER_MAX_GROWTH` more memory.** Loops nested over the
  sandbox's 100,000-item ranges would otherwise run for days, and a loop can keep thousands of bounded
  strings alive; a watchdog stops the render with an exception raised in its thread (`_Watchdog`).

Any failure inside a template is a `ChatTemplateError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localai.errors import LocalAIError, describe

# Used when a model ships no template: plain role-prefixed turns, clearly not any model's own format.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
MAX_OUTPUT_CHARS = 16 * 1024 * 1024  # far beyond any context window
MAX_STRING_CHARS = MAX_OUTPUT_CHARS  # any one string a template builds
MAX_REPEATED_ITEMS = 1024 * 1024  # any one list or tuple a template builds
MAX_INT_BITS = 1 << 16  # integers a template computes (2**64 needs 65)
MAX_DEPTH = 200  # lists and dicts inside each other
RENDER_SECONDS = 5.0  # real templates render in milliseconds
RENDER_MAX_GROWTH = 256 << 20  # bytes of resident memory a render may add (a long chat's prompt: a few MB)
WATCH_INTERVAL_S = 0.01


class ChatTemplateError(LocalAIError):
    """The model's chat template failed to render."""


class _TooSlow(Exception):
    """Raised inside a render's thread when it runs past its deadline."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"chat template refused the conversation: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """transformers' tojson, with its arguments (no HTML escaping; non-ASCII kept unless asked). Written piece
    by piece and given up past the bound: indentation grows with depth, so the size is counted, not guessed."""
    _limit(_text_size(value), "the tojson filter")
    width = len(indent) if isinstance(indent, str) else _count(indent) if indent is not None else 0
    if width > 16 or (indent is not None and not isinstance(indent, int | str)):
        raise SecurityError("tojson indents by at most 16")  # one piece of output holds a whole indentation
    encoder = json.JSONEncoder(ensure_ascii=bool(ensure_ascii), indent=indent, sort_keys=bool(sort_keys),
                               separators=tuple(separators) if isinstance(separators, list | tuple) else None)
    pieces, size = [], 0
    for piece in encoder.iterencode(value):
        size += len(piece)
        _limit(size, "the tojson filter")
        pieces.append(piece)
    return "".join(pieces)


def _text_size(value: Any) -> int:
    """At least len(str(value)), counted without building it and given up past the bound: a list that holds
    the same long list 400 times is small in memory and 1.2 G characters as text. Each container is measured
    once (aliasing is the attack), at most `MAX_DEPTH` deep."""
    measured: dict[int, int] = {}

    def size(item: Any, depth: int) -> int:
        if isinstance(item, str | bytes | bytearray):
            return len(item) + 3
        if not isinstance(item, list | tuple | set | frozenset | dict):
            return 24  # numbers (bounded in bits), None, undefined values, namespaces
        if id(item) in measured:
            return measured[id(item)]
        if depth > MAX_DEPTH:
            raise SecurityError(f"values nested more than {MAX_DEPTH} deep")
        total = 2 + 4 * len(item)
        for part in (*item.keys(), *item.values()) if isinstance(item, dict) else item:
            total += size(part, depth + 1)
            if total > MAX_STRING_CHARS:
                break
        measured[id(item)] = total
        return total

    return size(value, 0)


def _text(value: Any, what: str) -> str:
    """str(value) once its size is known to be within the bound."""
    if not isinstance(value, str):
        _limit(_text_size(value), what)
    return str(value)


# --- size estimates: an upper bound on the characters an operation produces, before it runs ---------


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _widths(fmt: str) -> int:
    """Every number in a format string could be a field width: their sum bounds the padding."""
    return sum(min(int(d), 1 << 40) for d in re.findall(r"\d+", fmt))


def _padded(value: Any, width: Any = 0, *_: Any, **__: Any) -> int:
    return max(len(_text(value, "padding")), _count(width))


def _replaced(value: Any, old: Any = "", new: Any = "", count: Any = -1, **_: Any) -> int:
    text, old, new = _text(value, "replace"), _text(old, "replace"), _text(new, "replace")
    hits = text.count(old) if old else len(text) + 1
    if _count(count) > 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def _indented(value: Any, width: Any = 4, *_: Any, **__: Any) -> int:
    text = _text(value, "indent")
    return len(text) + (text.count("\n") + 1) * (len(width) if isinstance(width, str) else _count(width))


def _wrapped(value: Any, width: Any = 79, _break: Any = True, wrapstring: Any = None, *_: Any,
             **kwargs: Any) -> int:
    text, wrap = _text(value, "wordwrap"), _text(kwargs.get("wrapstring", wrapstring) or "\n", "wordwrap")
    return len(text) + (len(text) // max(1, _count(kwargs.get("width", width))) + text.count("\n") + 1) * len(wrap)


def _expanded(value: Any, tabsize: Any = 8, **_: Any) -> int:
    text = _text(value, "expandtabs")
    return len(text) + text.count("\t") * _count(tabsize)


def _formatted(value: Any, *args: Any, **kwargs: Any) -> int:
    """A format string's fields can take their widths from the arguments too (`{0:{1}}`, `%*s`): every
    integer argument counts as one."""
    fmt, values = _text(value, "formatting"), (*args, *kwargs.values())
    return len(fmt) + _widths(fmt) + sum(_text_size(a) + min(_count(a), 1 << 40) for a in values)


def _translated(value: Any, table: Any = None, *_: Any, **__: Any) -> int:
    longest = max((_text_size(v) for v in table.values()), default=1) if isinstance(table, dict) else 1
    return len(_text(value, "translate")) * max(1, longest)


_ESTIMATES: dict[str, Callable[..., int]] = {
    "center": _padded, "ljust": _padded, "rjust": _padded, "zfill": _padded, "replace": _replaced,
    "indent": _indented, "wordwrap": _wrapped, "expandtabs": _expanded, "format": _formatted,
    "format_map": _formatted, "translate": _translated,
}
# the str methods a template may call (others, such as encode, are refused): what chat templates use
STR_METHODS = frozenset({
    "capitalize", "casefold", "center", "count", "endswith", "expandtabs", "find", "format", "format_map", "index",
    "isalnum", "isalpha", "isdigit", "isnumeric", "isspace", "istitle", "isupper", "islower", "join", "ljust",
    "lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust",
    "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title",
    "translate", "upper", "zfill",
})


def _joined(items: list[Any], separator: Any) -> int:
    return sum(_text_size(item) for item in items) + _text_size(separator) * len(items)


def _limit(chars: int, what: str) -> None:
    if chars > MAX_STRING_CHARS:
        raise SecurityError(f"{what} would build a string of {chars} characters (at most {MAX_STRING_CHARS})")


def _checked_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    estimate = _ESTIMATES[name]
    # a filter marked pass_eval_context / pass_environment gets that first; wraps() keeps the mark
    skip = 1 if hasattr(original, "jinja_pass_arg") else 0

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _limit(estimate(*args[skip:], **kwargs), f"the {name} filter")
        return original(*args, **kwargs)
    return checked


def _checked_join(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = _bounded_list(value)
        picked = items if attribute is None else list(map(make_attrgetter(eval_ctx.environment, attribute), items))
        _limit(_joined(picked, d), "the join filter")
        return original(eval_ctx, items, d, attribute)
    return join


def _checked_sum(original: Callable[..., Any]) -> Callable[..., Any]:
    """sum() of sequences (`start=[]`) concatenates them: bounded like `+`."""
    @functools.wraps(original)
    def total(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
        items = _bounded_list(iterable)
        if isinstance(start, str | list | tuple):  # numbers add up to one number: nothing to bound
            length = len(start) + sum(len(x) if isinstance(x, str | list | tuple) else 1 for x in items)
            if length > MAX_REPEATED_ITEMS:
                raise SecurityError(f"the sum filter would build a sequence of {length} items (at most "
                                    f"{MAX_REPEATED_ITEMS})")
        return original(environment, items, attribute, start)
    return total


def _checked_text(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that writes its value as text (`string`, `pprint`): the text's size first."""
    @functools.wraps(original)
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        _limit(_text_size(value) * 2, f"the {name} filter")
        return original(value, *args, **kwargs)
    return checked


def _bounded_list(value: Iterable[Any]) -> list[Any]:
    items = []
    for item in value:
        items.append(item)
        if len(items) > MAX_REPEATED_ITEMS:
            raise SecurityError(f"a sequence of more than {MAX_REPEATED_ITEMS} items")
    return items


# --- the environment ----------------------------------------------------------------------------------


class _RuntimeOnly(CodeGenerator):
    """Compiles without evaluating anything: output is never folded to a constant (plain template text
    aside), and `~` goes through the environment's size check."""

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        if isinstance(node, nodes.TemplateData):
            return super()._output_child_to_const(node, frame, finalize)
        raise nodes.Impossible()

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concatenate((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _RuntimeOnly
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def concatenate(self, values: tuple[Any, ...]) -> str:
        _limit(sum(map(_text_size, values)), "concatenation (~)")
        return "".join(map(str, values))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # Jinja2 names them so
        method = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox's formatter
        owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
        if isinstance(owner, str) and name not in STR_METHODS:
            raise SecurityError(f"str.{name} is not available to templates")
        if isinstance(owner, str) and name == "join" and args:
            args = (_bounded_list(args[0]), *args[1:])
            _limit(_joined(args[0], owner), "str.join")
        elif isinstance(owner, str) and name in _ESTIMATES:
            _limit(_ESTIMATES[name](owner, *args, **kwargs), f"str.{name}")
        return super().call(__context, __obj, *args, **kwargs)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Repetition, concatenation, formatting and big integers, before they run."""
    if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
        raise SecurityError("exponent too large")
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            repeated = isinstance(seq, str | bytes | bytearray | list | tuple) and isinstance(count, int)
            # items, and the text they make (a list repeating one long list is short, its text is not)
            if repeated and (len(seq) * count > MAX_REPEATED_ITEMS or _text_size(seq) * count > MAX_STRING_CHARS):
                raise SecurityError("repetition too large")
    if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        _limit(len(left) + len(right), "concatenation (+)")
    if operator == "%" and isinstance(left, str):
        _limit(_formatted(left, *(right if isinstance(right, tuple | list) else (right,))), "% formatting")
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() * abs(right) if operator == "**" else left.bit_length() + right.bit_length()
        if operator in ("*", "**") and bits > MAX_INT_BITS:
            raise SecurityError(f"an integer of more than {MAX_INT_BITS} bits")


def _finalized(value: Any) -> Any:
    """Every `{{ ... }}` output: its text's size checked before Jinja2 writes it."""
    if not isinstance(value, str):
        _limit(_text_size(value), "output")
    return value


def _environment() -> ImmutableSandboxedEnvironment:
    # as transformers renders: blocks trimmed, and {% break %} / {% continue %} (some templates use them)
    env = _LimitedSandbox(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, optimized=False,
                          finalize=_finalized, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    for name in ("center", "indent", "wordwrap", "format", "replace"):
        env.filters[name] = _checked_filter(name, env.filters[name])
    env.filters["join"] = _checked_join(env.filters["join"])
    env.filters["sum"] = _checked_sum(env.filters["sum"])
    for name in ("string", "pprint"):
        env.filters[name] = _checked_text(name, env.filters[name])
    env.globals.pop("lipsum", None)  # lorem ipsum of any length: no chat template needs it
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


_ENV = _environment()


# --- rendering --------------------------------------------------------------------------------------


class _Allocations:
    """Work that grows this process's memory on purpose on another thread (a model's weights loading while
    a server renders another request's template). Memory cannot be told apart by thread, so a render that
    overlaps such work is held to its time limit and its per-operation size checks only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = self.started = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            self.active += 1
            self.started += 1
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1


loading_weights = _Allocations()


class _Watchdog:
    """Stops the render running in the thread that made it once it runs past `RENDER_SECONDS` or grows this
    process's memory by more than `RENDER_MAX_GROWTH` bytes: sizes are checked per operation above, but a
    loop can keep many bounded strings alive. A template is pure Python running in the interpreter, so an
    exception set on its thread (`PyThreadState_SetAsyncExc`) stops it at the next bytecode; one that lost
    the race with the render's end is cleared."""

    def __init__(self) -> None:
        self.target, self.reason = threading.get_ident(), ""
        self._lock, self._done, self._fired = threading.Lock(), threading.Event(), False
        self._start, self._loads = _heap_bytes(), loading_weights.started
        self._thread = threading.Thread(target=self._watch, daemon=True, name="template-watchdog")

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        with self._lock:
            if self._fired:  # it may not have reached the render yet
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.target), None)
        self._thread.join()

    def _watch(self) -> None:
        deadline = time.monotonic() + RENDER_SECONDS
        while not self._done.wait(WATCH_INTERVAL_S):
            grown = _heap_bytes() - self._start
            if time.monotonic() > deadline:
                self._stop(f"it ran longer than {RENDER_SECONDS:g} s")
            elif grown > RENDER_MAX_GROWTH and not self._overlapped():
                self._stop(f"it took more than {RENDER_MAX_GROWTH >> 20} MB of memory")

    def _overlapped(self) -> bool:
        """Whether weights loaded on another thread during this render (their memory is not the render's)."""
        return bool(loading_weights.active) or loading_weights.started != self._loads

    def _stop(self, reason: str) -> None:
        with self._lock:
            if not self._done.is_set() and not self._fired:
                self._fired, self.reason = True, reason
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.target), ctypes.py_object(_TooSlow))
        self._done.set()


def _heap_bytes() -> int:
    """Resident anonymous memory (Linux's RssAnon: heaps, not the model files other threads map in), or the
    whole resident size where the OS does not say."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return int(psutil.Process().memory_info().rss)
    line = next((line for line in status.splitlines() if line.startswith("RssAnon:")), None)
    return int(line.split()[1]) * 1024 if line else int(psutil.Process().memory_info().rss)


def render(template: str, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
           **variables: Any) -> str:
    """Render `messages` with `template`; extra `variables` (bos_token, enable_thinking, ...) are passed in."""
    try:
        with _Watchdog() as watchdog:
            compiled = _ENV.from_string(template)
            pieces, size = [], 0
            for piece in compiled.generate(messages=messages, add_generation_prompt=add_generation_prompt,
                                           **variables):
                size += len(piece)
                if size > MAX_OUTPUT_CHARS:
                    raise SecurityError(f"output larger than {MAX_OUTPUT_CHARS} characters")
                pieces.append(piece)
            return "".join(pieces)
    except ChatTemplateError:
        raise
    except _TooSlow:
        raise ChatTemplateError(f"chat template failed: {watchdog.reason}") from None
    except Exception as exc:  # the template is foreign code: whatever it raises is its failure
        raise ChatTemplateError(f"chat template failed: {describe(exc)}") from exc
