"""`localai bench`: output formats, history and bad arguments."""

from __future__ import annotations

import csv
import io
import json

import pytest

FAST = ("-p", "16", "-n", "8", "-r", "2", "--threads", "1")


def test_json_has_machine_settings_and_one_row_per_model_and_test(cli, package, onnx_package):
    result = cli("bench", str(package("qwen3", "q8_0")), str(onnx_package("qwen3", "fp32")), *FAST, "--format", "json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["machine"]["threads"] == 1 and report["machine"]["libraries"]["llama-cpp-python"]
    assert report["settings"]["n_prompt"] == 16
    rows = report["results"]
    assert [(r["backend"], r["test"]) for r in rows] == [("llama.cpp", "pp16"), ("llama.cpp", "tg8"),
                                                          ("onnxruntime", "pp16"), ("onnxruntime", "tg8")]
    assert all(r["tokens_per_s"] > 0 and r["load_s"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    assert [r["thread_policy"] for r in rows] == ["fixed 1"] * 2 + ["fixed 1, no spinning"] * 2


@pytest.mark.parametrize("fmt", ["table", "md", "csv"])
def test_text_formats(fmt, cli, package):
    result = cli("bench", str(package("qwen3", "q8_0")), *FAST, "--format", fmt)
    assert result.code == 0, result.err
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.out)))
        assert [r["test"] for r in rows] == ["pp16", "tg8"] and float(rows[0]["tokens_per_s"]) > 0
    else:
        assert "pp16" in result.out and "tg8" in result.out and "threads" in result.out and "fixed 1" in result.out
        assert "±" in result.out and "GPU MB" not in result.out  # no NVIDIA GPU here: no empty column
        if fmt == "md":
            assert result.out.startswith("| model | quant |")


def test_multi_turn_scenario_reports_ttft_per_turn(cli, package):
    result = cli("bench", str(package("nemotron_h", "q8_0")), "-p", "0", "-n", "0", "--turns", "4", "-r", "1",
                 "--format", "md")
    assert result.code == 0, result.err
    assert "| chat4 |" in result.out and "TTFT turn 4 / turn 2 = x" in result.out


def test_history_appends_json_lines(cli, package, tmp_path):
    history = tmp_path / "bench.jsonl"
    for _ in range(2):
        result = cli("bench", str(package("qwen3", "q8_0")), *FAST, "--format", "csv", "--history", str(history))
        assert result.code == 0, result.err
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(lines) == 4 and [line["test"] for line in lines] == ["pp16", "tg8"] * 2
    assert lines[0]["machine"]["cpu"] and lines[0]["time"] and lines[0]["model"] == "qwen3-q8_0"


@pytest.mark.parametrize("args, message", [
    (("-r", "0"), "repetitions must be >= 1"),
    (("-p", "0", "-n", "0"), "nothing to measure"),
    (("--ctx", "8"), "too small"),
    (("--threads", "0"), "threads must be >= 1"),
])
def test_bad_arguments_are_one_line_errors(args, message, cli, package):
    result = cli("bench", str(package("qwen3", "q8_0")), *args)
    assert result.code == 1 and message in result.err and len(result.err.strip().splitlines()) == 1


def test_an_unknown_model_fails_before_anything_runs(cli, package, tmp_path):
    result = cli("bench", str(package("qwen3", "q8_0")), str(tmp_path / "nope"), *FAST)
    assert result.code == 1 and "no model" in result.err and result.out == ""


def test_history_must_be_writable_before_anything_runs(cli, package, tmp_path):
    result = cli("bench", str(package("qwen3", "q8_0")), *FAST, "--history", str(tmp_path))
    assert result.code == 1 and "is a folder" in result.err and result.out == ""
    result = cli("bench", str(package("qwen3", "q8_0")), *FAST, "--history", str(tmp_path / "no" / "h.jsonl"))
    assert result.code == 1 and "no folder" in result.err and result.out == ""


def test_one_failing_model_keeps_the_others_results(cli, package, tmp_path):
    import shutil

    broken = shutil.copytree(package("qwen3", "q8_0"), tmp_path / "broken")
    gguf = next(broken.glob("*.gguf"))
    gguf.write_bytes(gguf.read_bytes()[:1000])
    history = tmp_path / "h.jsonl"
    result = cli("bench", str(broken), str(package("llama", "q8_0")), *FAST, "--format", "csv", "--history",
                 str(history))
    assert result.code == 1
    assert [r["model"] for r in csv.DictReader(io.StringIO(result.out))] == ["llama-q8_0", "llama-q8_0"]
    assert len(history.read_text().splitlines()) == 2
    assert result.err.strip().splitlines()[-1].startswith(f"error: {broken}: package qwen3-q8_0:")
