"""Route llama.cpp's log through Python.

llama-cpp-python's own log filter maps levels wrongly (warnings print, errors vanish) and writes to
stderr, which would break the CLI's one-line errors. One callback replaces it: nothing reaches the
terminal, messages go to the `localai.llama_cpp` logger at debug level (`--debug` shows them), and
`capture()` keeps them so a failure can be reported with llama.cpp's own reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import llama_cpp

_logger = logging.getLogger("localai.llama_cpp")
_ERROR, _CONTINUATION = 4, 5  # ggml_log_level values


@dataclass(eq=False)  # each capture is its own: two empty ones must not be mistaken for each other on removal
class LogCapture:
    """llama.cpp log lines received while a `capture()` block ran, with their ggml levels (with several
    models running on several threads, a capture may also see another's lines)."""

    lines: list[tuple[int, str]] = field(default_factory=list)

    def add(self, level: int, text: str) -> None:
        if level == _CONTINUATION and self.lines:
            last_level, last_text = self.lines[-1]
            self.lines[-1] = (last_level, last_text + text)
        else:
            self.lines.append((level, text))

    def last_error(self) -> str | None:
        """The last error message, on one line."""
        errors = [text for level, text in self.lines if level == _ERROR]
        return " ".join(errors[-1].split()) if errors else None


_captures: list[LogCapture] = []


@llama_cpp.llama_log_callback
def _on_log(level: int, text: bytes | None, user_data: ctypes.c_void_p) -> None:
    message = text.decode("utf-8", "replace") if text else ""
    for capture_ in tuple(_captures):  # another thread may start or end a capture meanwhile
        capture_.add(level, message)
    if message.strip():
        _logger.debug(message.rstrip())


_installed = False


def install() -> None:
    """Install the callback (idempotent). The module keeps `_on_log` alive for llama.cpp."""
    global _installed
    if not _installed:
        llama_cpp.llama_log_set(_on_log, ctypes.c_void_p(0))
        _installed = True


@contextlib.contextmanager
def capture() -> Iterator[LogCapture]:
    """Collect llama.cpp's log lines for the duration of the block."""
    install()
    log = LogCapture()
    _captures.append(log)
    try:
        yield log
    finally:
        _captures.remove(log)
