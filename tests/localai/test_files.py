"""localai.files: whole files or none, permissions and links kept, appends in one piece."""

from __future__ import annotations

import os

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
