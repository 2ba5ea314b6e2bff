"""localai.files: whole files or none, permissions and links kept, appends in one piece."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from localai.errors import LocalAIError
from localai.files import append_lines, check_writable, replaced_atomically, write_text_atomic


def test_a_replaced_file_keeps_its_mode_and_a_link_its_target(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), replaced_atomically(target) as temp:
        temp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["data.txt"]
    with pytest.raises(LocalAIError, match="cannot write"):
        write_text_atomic(tmp_path / "missing" / "x.txt", "text")


def test_append_lines_and_check_writable(tmp_path):
    history = tmp_path / "h.jsonl"
    append_lines(history, ["a", "b"])
    append_lines(history, ["c"])
    assert history.read_text() == "a\nb\nc\n"
    assert check_writable(history, "--history") == history
    for bad, message in ((tmp_path, "is a folder"), (tmp_path / "no" / "x", "no folder")):
        with pytest.raises(LocalAIError, match=message):
            check_writable(bad, "--history")
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(LocalAIError, match="cannot write into"):
            check_writable(tmp_path / "ro" / "x", "--history")


_APPEND_ON_A_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from localai.errors import LocalAIError
from localai.files import append_lines
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails (EFBIG) or stops short
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]),) * 2)
try:
    append_lines(Path(sys.argv[1]), ["x" * 100])
except LocalAIError as exc:
    print(exc)
"""


@pytest.mark.parametrize("existing", ["", "old line\n"])
def test_an_append_that_does_not_fit_leaves_the_file_as_it_was(tmp_path, existing):
    """A full disk, as the file-size limit of a child process: the write stops short (a new file's first
    10 bytes, or nothing fits after the old content)."""
    history = tmp_path / "history.jsonl"
    if existing:
        history.write_text(existing)
    limit = len(existing) + 10 if existing else 10
    result = subprocess.run([sys.executable, "-c", _APPEND_ON_A_FULL_DISK, str(history), str(limit)],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith(f"cannot append to {history}"), result
    assert (history.read_text() == existing) if existing else not history.exists()
