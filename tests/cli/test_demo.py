from __future__ import annotations

from localai.cli.demo import DEMO_PACKAGE
from localai.store import models_dir


def test_demo_builds_once_then_reuses_the_package(cli):
    first = cli("demo", "--max-tokens", "6")
    assert first.code == 0, first.err
    assert "random weights" in first.out and "assistant: " in first.out
    assert "building the demo checkpoint" in first.err
    assert (models_dir() / DEMO_PACKAGE / "manifest.json").is_file()
    second = cli("demo", "--max-tokens", "6", "--prompt", "Hello? /no_think")
    assert second.code == 0 and second.err == ""
    assert "user: Hello? /no_think" in second.out
