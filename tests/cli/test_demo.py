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


def test_demo_without_a_terminal_answers_the_example_and_says_how_to_chat(cli):
    result = cli("demo", "--threads", "1")
    assert result.code == 0, result.err
    assert "What is 48213 + 9876?" in result.out and "58089" in result.out
    [hint] = [line for line in result.err.splitlines() if "terminal" in line]
    assert "`localai demo --plain`" in hint


def test_demo_threads_must_be_positive(cli):
    result = cli("demo", "--prompt", "What is 1 + 2?", "--threads", "0")
    assert result.code == 1 and result.err.strip() == "error: --threads must be at least 1, got 0"


def test_demo_plain_mode(cli, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 5000 + 5000?\n/quit\n"))
    result = cli("demo", "--plain")
    assert result.code == 0, result.err
    assert result.out.startswith("The demo model adds two whole numbers of 1 to 6 digits")  # what to ask it
    assert "10000" in result.out
