"""`localai eval`: text mode against a reference, task mode (budget sweep), and bad arguments."""

from __future__ import annotations

import csv
import json
import re

import pytest


def test_text_mode_against_a_package(cli, package):
    result = cli("eval", str(package("nemotron_h", "q8_0")), "--reference", str(package("nemotron_h", "f32")),
                 "--ctx", "128", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["model"] == "nemotron-h-q8_0" and report["reference"] == "nemotron-h-f32"
    assert report["ctx"] == 128 and report["scored"] > 0 and report["perplexity"] > 1
    assert 0 < report["kl_mean"] < 5e-3 and 0.8 <= report["top1_agreement"] <= 1


def test_text_mode_table_against_a_checkpoint_with_a_given_text(cli, package, checkpoint, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("rivers and apples " * 60, encoding="utf-8")
    result = cli("eval", str(package("nemotron_h", "f32")), "--reference", str(checkpoint("nemotron_h")),
                 "--text", str(text), "--ctx", "64")
    assert result.code == 0, result.err
    assert "KL divergence" in result.out and re.search(r"top-1 agreement +100\.00%", result.out)
    assert result.err == ""  # transformers' notices are silenced


def test_perplexity_alone(cli, package):
    result = cli("eval", str(package("llama", "q8_0")), "--ctx", "64")
    assert result.code == 0, result.err
    assert "perplexity" in result.out and "KL" not in result.out


def test_a_reference_with_another_tokenizer_is_refused(cli, package):
    result = cli("eval", str(package("llama", "q8_0")), "--reference", str(package("nemotron_h", "f32")))
    assert result.code == 1 and "tokenizes the text differently" in result.err


def test_task_mode_sweep(cli, demo_package, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("eval", str(demo_package("gguf", "q8_0")), "--task", "arithmetic", "--budgets", "0,32,unlimited",
                 "--n", "4", "--max-tokens", "400")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].endswith("4 problems per budget, greedy")
    assert "│" in result.out  # the chart
    assert list(tmp_path.iterdir()) == [] and "wrote" not in result.err  # nothing written unasked
    table = lines[3:6]  # off (0), 32, unlimited
    assert [row.strip().split("  ")[0] for row in table] == ["off (0)", "32", "unlimited"]
    accuracy = [float(row.split("%")[0].split()[-1]) for row in table]
    assert accuracy[2] > accuracy[0]  # thinking pays on the demo task


def test_task_mode_json_and_csv_path(cli, demo_package, tmp_path):
    out = tmp_path / "sweep.csv"
    result = cli("eval", str(demo_package("gguf", "q8_0")), "--task", "arithmetic", "--budgets", "0,unlimited",
                 "--n", "2", "--csv", str(out), "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert [r["budget"] for r in report["results"]] == [0, "unlimited"] and report["csv"] == str(out)
    rows = list(csv.DictReader(out.open()))
    assert [r["budget"] for r in rows] == ["0", "unlimited"]
    assert [float(r["accuracy"]) for r in rows] == [r["accuracy"] for r in report["results"]]


@pytest.mark.parametrize("args, message", [
    (("--task", "arithmetic", "--reference", "x"), "--reference belong to text mode"),
    (("--budgets", "0,16"), "--budgets need --task"),
    (("--task", "poetry"), "unknown task 'poetry'"),
    (("--task", "arithmetic", "--budgets", "0,lots"), "neither a token count"),
    (("--task", "arithmetic", "--n", "0"), "--n must be at least 1"),
    (("--text", "/nonexistent/text.txt"), "cannot read --text"),
    (("--ctx", "4"), "--ctx must be at least 8"),
    (("--threads", "0"), "--threads must be at least 1"),
    (("--task", "arithmetic", "--csv", "/nonexistent/dir/x.csv"), "no folder /nonexistent/dir"),
])
def test_bad_arguments_are_one_line_errors(args, message, cli, package):
    result = cli("eval", str(package("llama", "q8_0")), *args)
    assert result.code == 1, result.out
    assert message in result.err and len(result.err.strip().splitlines()) == 1


def test_a_checkpoint_reference_without_a_tokenizer_is_refused(cli, package, checkpoint, tmp_path):
    import shutil

    bare = shutil.copytree(checkpoint("nemotron_h"), tmp_path / "bare")
    (bare / "tokenizer.json").unlink()
    result = cli("eval", str(package("nemotron_h", "f32")), "--reference", str(bare), "--ctx", "64")
    assert result.code == 1 and "has no tokenizer.json" in result.err
