"""Writing files so that a failure or Ctrl-C never leaves half of one behind."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localai.errors import LocalAIError


def check_writable(path: Path, what: str) -> Path:
    """Refuse, before any long work, a `path` whose folder is missing or not writable, or that is a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise LocalAIError(f"{what} {path} is a folder; give a file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise LocalAIError(f"{what} {path}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LocalAIError(f"{what} {path}: cannot write into {folder}")
    return path


@contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder to write; when the block ends without error it is renamed over
    `path`, and on any error (Ctrl-C included) it is deleted. A replaced file keeps its permissions (a new
    one gets the umask's); a symbolic link keeps pointing where it did (its target is what gets replaced)."""
    path = Path(os.path.realpath(Path(path).expanduser()))
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise LocalAIError(f"cannot write {path}: {exc.strerror or exc}") from exc
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise LocalAIError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that it is either the old file or the whole new one (see replaced_atomically)."""
    with replaced_atomically(path) as temp:
        temp.write_text(text, encoding="utf-8", newline="")


def append_lines(path: Path, lines: list[str]) -> None:
    """Append `lines` to the text file `path` (created if absent) in one write: concurrent appenders do not
    interleave, earlier content is never rewritten, and a failed append (a full disk) leaves the file as it
    was (a file it created: not there)."""
    path = Path(path).expanduser()
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    existed = path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise LocalAIError(f"cannot append to {path}: {exc.strerror or exc}") from exc
    try:
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
        except OSError as exc:
            written, reason = 0, exc.strerror or str(exc)
        else:
            reason = "the disk is full" if written != len(data) else ""
        if reason:
            if os.fstat(fd).st_size == start + written:  # no other appender since: take back the part written
                os.ftruncate(fd, start)
            if not existed and start == 0:
                path.unlink(missing_ok=True)
            raise LocalAIError(f"cannot append to {path}: {reason}")
    finally:
        os.close(fd)
