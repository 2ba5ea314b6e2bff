"""Structured output and tools on the command line: `run --json-schema / --json-object / --regex / --grammar`,
`--tools` with `--tool-choice`, and `chat --plain` answering tool calls with /tool."""

from __future__ import annotations

import io
import json
import re

import pytest

from localai import schemas

SCHEMA = {"type": "object", "properties": {"color": {"enum": ["red", "green"]},
                                           "size": {"type": "integer", "minimum": 1, "maximum": 9}},
          "required": ["color", "size"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 10}}, "required": ["city"]}}}]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "tools.json").write_text(json.dumps(TOOLS))
    (tmp_path / "yes.gbnf").write_text('root ::= "yes" | "no"')
    (tmp_path / "bad.json").write_text('{"type": "strin"}')
    (tmp_path / "not.json").write_text("{")
    return tmp_path


def _run(cli, model, *args):
    result = cli("run", str(model), "--prompt", "Describe it.", "--no-think", "--seed", "3", "--temperature", "1",
                 "--max-tokens", "100", *args)
    assert result.code == 0, result.err
    return result


def test_json_schema_regex_and_grammar_files(cli, package, files):
    model = package("nemotron3_moe", "f32")
    report = json.loads(_run(cli, model, "--json-schema", str(files / "schema.json"), "--json").out)
    assert report["finish_reason"] == "stop" and schemas.problem(json.loads(report["content"]), SCHEMA) is None
    assert isinstance(json.loads(json.loads(_run(cli, model, "--json-object", "--json", "--temperature", "0",
                                                 "--max-tokens", "300").out)["content"] or "{}"), dict)
    assert re.fullmatch(r"[a-f]{3}\n", _run(cli, model, "--regex", "^[a-f]{3}$").out)
    assert _run(cli, model, "--grammar", str(files / "yes.gbnf")).out in ("yes\n", "no\n")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--json-schema", "bad.json"], "not a valid JSON Schema"),
    (["--json-schema", "not.json"], "not valid JSON"),
    (["--json-schema", "missing.json"], "not found"),
    (["--regex", "(?=a)"], "look-around"),
    (["--grammar", "schema.json"], "Lark grammar"),
    (["--tools", "schema.json"], "tools must be a list"),
    (["--tools", "tools.json", "--tool-choice", "fly"], "names no tool"),
    (["--tools", "tools.json"], "takes no tools"),
    (["--json-object", "--regex", "a"], "not allowed with"),
])
def test_bad_schemas_grammars_and_tools_are_one_line(cli, package, files, monkeypatch, args, fragment):
    monkeypatch.chdir(files)
    result = cli("run", str(package("nemotron3_moe", "f32")), "--prompt", "x", *args)
    assert result.code in (1, 2) and fragment in result.err and result.err.count("\n") == 1, result.err


def test_tools_give_tool_calls_in_the_json_report_and_on_stdout(cli, package, files):
    model = package("qwen3_tools", "q8_0")
    args = ("--tools", str(files / "tools.json"), "--tool-choice", "required", "--max-tokens", "200")
    report = json.loads(_run(cli, model, *args, "--json").out)
    [call] = report["tool_calls"]
    assert report["finish_reason"] == "tool_calls" and call["error"] is None and call["name"] == "get_weather"
    printed = _run(cli, model, *args).out
    assert f"tool call: get_weather {call['arguments']}" in printed


def test_plain_chat_answers_tool_calls_with_slash_tool(cli, package, files, monkeypatch):
    saved = files / "chat.json"
    script = "\n".join(["/tool too early", "Weather in Paris?", '/tool {"temp": 21}', f"/save {saved}", "/quit"])
    monkeypatch.setattr("sys.stdin", io.StringIO(script + "\n"))
    result = cli("chat", str(package("qwen3_tools", "q8_0")), "--plain", "--no-think", "--tools",
                 str(files / "tools.json"), "--tool-choice", "required", "--max-tokens", "200", "--seed", "1")
    assert result.code == 0, result.err
    assert "no tool call waiting" in result.err and "tool call: get_weather" in result.out
    assert "wait for a result: /tool TEXT answers get_weather" in result.out
    roles = [m["role"] for m in json.loads(saved.read_text())["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]


def test_plain_chat_with_a_json_schema_answers_every_turn_in_it(cli, package, files, monkeypatch):
    saved = files / "chat.json"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"one\ntwo\n/save {saved}\n/quit\n"))
    result = cli("chat", str(package("nemotron3_moe", "f32")), "--plain", "--no-think", "--json-schema",
                 str(files / "schema.json"), "--temperature", "1", "--seed", "4", "--max-tokens", "100")
    assert result.code == 0, result.err
    answers = [m["content"] for m in json.loads(saved.read_text())["messages"] if m["role"] == "assistant"]
    assert len(answers) == 2 and all(schemas.problem(json.loads(a), SCHEMA) is None for a in answers)
