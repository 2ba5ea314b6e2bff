"""`localai run` with thinking control, and the line-mode `localai chat --plain`."""

from __future__ import annotations

import io
import json

import pytest


def _run_json(cli, model, *args):
    result = cli("run", model, "--prompt", "What is 2 + 2?", "--json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_run_json_has_the_documented_shape(cli, package):
    report = _run_json(cli, str(package("nemotron_h", "q8_0")), "--max-tokens", "20", "--seed", "1", "--think",
                       "--reasoning-budget", "5", "--reasoning-grace", "0", "--temperature", "1")
    assert {"content", "reasoning", "finish_reason", "usage", "timings"} <= set(report)
    assert set(report["usage"]) == {"prompt_tokens", "reasoning_tokens", "completion_tokens"}
    assert set(report["timings"]) == {"ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s", "total_ms"}
    assert report["usage"]["reasoning_tokens"] == 5  # the random model thinks longer than 5 tokens
    assert report["usage"]["completion_tokens"] == 20
    assert report["timings"]["ttft_ms"] > 0 and report["timings"]["total_ms"] >= report["timings"]["ttft_ms"]


@pytest.mark.parametrize("flags", [["--no-think"], ["--reasoning-budget", "0"]])
def test_run_without_thinking(cli, package, flags):
    report = _run_json(cli, str(package("nemotron_h", "q8_0")), "--max-tokens", "12", "--seed", "2", *flags)
    assert report["reasoning"] == "" and report["usage"]["reasoning_tokens"] == 0


def test_run_streams_reasoning_to_stderr_and_the_answer_to_stdout(cli, package):
    model = str(package("nemotron_h", "q8_0"))
    report = _run_json(cli, model, "--max-tokens", "16", "--seed", "4", "--think", "--reasoning-budget", "6")
    streamed = cli("run", model, "--prompt", "What is 2 + 2?", "--max-tokens", "16", "--seed", "4", "--think",
                   "--reasoning-budget", "6")
    assert streamed.code == 0
    assert streamed.out == report["content"] + "\n"
    assert streamed.err == report["reasoning"] + "\n"


def test_bad_generation_settings_are_one_line_errors(cli, package):
    model = str(package("nemotron_h", "q8_0"))
    for args in (["--top-p", "0"], ["--max-tokens", "0"], ["--reasoning-budget", "-3"]):
        result = cli("run", model, "--prompt", "x", *args)
        assert result.code in (1, 2) and result.err.count("\n") == 1 and result.err.startswith("error: "), args


def test_plain_chat_commands(cli, package, tmp_path, monkeypatch):
    saved = tmp_path / "conversation.json"
    script = "\n".join(["/help", "/budget 4", "hello there", "/no_think", "and now?", "/budget lots",
                        "/save " + str(saved), "/reset", "/quit"]) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    result = cli("chat", str(package("nemotron_h", "q8_0")), "--plain", "--max-tokens", "12", "--seed", "5",
                 "--think")
    assert result.code == 0, result.err
    assert "/budget N" in result.out and "reasoning budget: 4" in result.out
    assert "reasoning off" in result.out and "new conversation" in result.out
    assert "usage: /budget N" in result.err
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"].startswith("<think>\n")  # first answer reasoned (budget 4)
    assert not messages[3]["content"].startswith("<think>")  # the second did not


def test_plain_chat_ends_on_end_of_input(cli, package, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    result = cli("chat", str(package("nemotron_h", "q8_0")), "--plain")
    assert result.code == 0


def test_a_template_reaching_for_python_internals_fails_in_one_line(cli, package, tmp_path):
    import shutil

    folder = shutil.copytree(package("nemotron_h", "q8_0"), tmp_path / "evil")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["chat_template"] = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = cli("run", str(folder), "--prompt", "hi")
    assert result.code == 1
    assert result.err.count("\n") == 1 and result.err.startswith("error: chat template failed")


def test_plain_chat_survives_an_error_in_one_turn(cli, package, monkeypatch):
    script = "hello\n" + "tell me about rivers " * 200 + "\nstill there?\n/quit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    result = cli("chat", str(package("nemotron_h", "q8_0")), "--plain", "--max-tokens", "6", "--ctx", "128",
                 "--no-think", "--on-overflow", "error", "--temperature", "0")  # sampled text could hold "> "
    assert result.code == 0
    assert "error: the conversation needs" in result.err
    assert result.out.count("> ") == 4  # every line was read, the session went on


def test_sigterm_ends_a_chat_even_while_it_answers(package, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "localai.cli", "chat", str(package("nemotron_h", "q8_0")), "--plain",
         "--max-tokens", "100000", "--ctx", "16384", "--think"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LOCALAI_HOME": str(tmp_path)})
    proc.stdin.write("go on forever\n")
    proc.stdin.flush()
    time.sleep(3)  # loaded and answering: 16k tokens take longer than that
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err.strip().endswith("terminated"), err


def test_chat_without_plain_opens_the_app_with_the_command_line_settings(cli, monkeypatch, isolated_store):
    from tui.app import ChatApp

    opened = []
    monkeypatch.setattr(ChatApp, "run", lambda self: opened.append(self))  # no terminal in the test runner
    result = cli("chat", "some-model", "--ctx", "2048", "--no-think", "--reasoning-budget", "64", "--temperature",
                 "0.2")
    assert result.code == 0
    [app] = opened
    assert app.model_ref == "some-model" and app.load_options == {"n_ctx": 2048, "n_threads": None, "device": "auto"}
    assert app.settings["think"] is False and app.settings["reasoning_budget"] == 64
    assert app.settings["temperature"] == 0.2 and app.save_dir == isolated_store / "chats"
    assert cli("chat", "--plain").code == 1  # line mode needs a model
