"""`localai demo` on the bundled, trained demo model."""

from __future__ import annotations

import io

from localai.store import models_dir


def test_demo_answers_one_question_and_converts_only_once(cli):
    first = cli("demo", "--prompt", "What is 123 + 4567?")
    assert first.code == 0, first.err
    assert "converting the demo model" in first.err
    assert "4690" in first.out.split("user:")[1]
    assert (models_dir() / "demo-nemotron-h-q8_0" / "manifest.json").is_file()
    again = cli("demo", "--prompt", "What is 1000 + 2345?", "--no-think")
    assert again.code == 0 and "converting" not in again.err
    assert again.err.strip() == ""  # no thinking: nothing on stderr


def test_demo_without_a_terminal_answers_the_example(cli):
    result = cli("demo")
    assert result.code == 0, result.err
    assert "What is 48213 + 9876?" in result.out and "58089" in result.out


def test_demo_plain_mode(cli, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 5000 + 5000?\n/quit\n"))
    result = cli("demo", "--plain")
    assert result.code == 0, result.err
    assert "10000" in result.out
