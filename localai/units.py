"""How sizes and untrusted text are written everywhere a user reads them (CLI tables, the chat app's
picker, notices), so one package never shows as 3.8 MB in one place and 4 MB in another, and a
manifest's text never reaches the terminal as escape sequences."""

from __future__ import annotations

import reprlib

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel = 3


def human_bytes(n: int) -> str:
    """1234567 -> "1.2 MB" (decimal units, as disks and downloads count)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def printable(text: object) -> str:
    """`text` with control characters escaped (ESC as \\x1b): a manifest from an archive could otherwise
    retitle the terminal or clear the screen when `ls` or `info` prints it."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def shown(value: object) -> str:
    """`value` as an error message quotes it: its repr, cut short while it is written (a config, manifest or
    request may hold megabytes in one value) and with control characters escaped."""
    return printable(_SHORT.repr(value))
