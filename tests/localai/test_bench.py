"""localai.bench: llama-bench style measurements on a real tiny package, in this process and in a child."""

from __future__ import annotations

import time

import pytest

from localai.backends.threads import physical_cores
from localai.bench import BenchSettings, measure, measure_isolated
from localai.errors import LocalAIError


def test_settings_refuse_nonsense():
    for kwargs, message in (({"repetitions": 0}, "repetitions"), ({"n_prompt": -1}, "prompt"),
                            ({"n_prompt": 0, "n_gen": 0}, "nothing to measure"), ({"threads": 0}, "threads"),
                            ({"n_ctx": 100}, "too small")):
        with pytest.raises(LocalAIError, match=message):
            BenchSettings(**kwargs)
    assert BenchSettings(turns=2).needed_context == 4096


def test_measure_reports_every_test_with_numbers_consistent_with_wall_time(package):
    settings = BenchSettings(n_prompt=48, n_gen=16, repetitions=2, turns=3, threads=2)
    steps: list[str] = []
    started = time.perf_counter()
    rows = measure(str(package("nemotron_h", "f16")), settings, steps.append)
    wall = time.perf_counter() - started

    assert [r.test for r in rows] == ["pp48", "tg16", "chat3"]
    assert len(steps) == settings.steps()
    pp, tg, chat = rows
    for row in rows:
        assert row.model == "nemotron-h-f16" and row.backend == "llama.cpp" and row.device == "cpu"
        assert row.threads == 2 and row.thread_policy == "fixed 2"
        assert row.tokens_per_s > 0 and len(row.samples_tokens_per_s) == 2
        assert row.tokens_per_s == pytest.approx(sum(row.samples_tokens_per_s) / 2, abs=0.01)
        assert 0 < row.load_s < wall and row.peak_rss_mb > 0
    # the measured runs (warm-ups excluded) cannot take longer than the whole call
    measured = sum(48 / r for r in pp.samples_tokens_per_s) + sum(16 / r for r in tg.samples_tokens_per_s)
    assert measured < wall
    assert pp.ttft_ms >= 1000 * 48 / max(pp.samples_tokens_per_s) * 0.99  # TTFT includes processing the prompt
    assert pp.itl_p50_ms is None and tg.ttft_ms is None
    assert 0 < tg.itl_p50_ms <= tg.itl_p95_ms < 1000 * wall
    assert len(chat.ttft_per_turn_ms) == 3 and chat.ttft_ms == chat.ttft_per_turn_ms[-1]


def test_measure_on_onnx(onnx_package):
    rows = measure(str(onnx_package("nemotron_h", "int4")), BenchSettings(n_prompt=16, n_gen=8, repetitions=1))
    assert [(r.backend, r.device, r.quant, r.test) for r in rows] == [("onnxruntime", "cpu", "int4", "pp16"),
                                                                       ("onnxruntime", "cpu", "int4", "tg8")]
    assert all(r.tokens_per_s > 0 and r.tokens_per_s_std is None for r in rows)  # one run: no spread
    cores = physical_cores()
    assert all(r.threads == cores and r.thread_policy == f"fixed {cores}, spinning while idle" for r in rows)


def test_the_default_thread_policy_is_recorded(package):
    rows = measure(str(package("nemotron_h", "q8_0")), BenchSettings(n_prompt=16, n_gen=8, repetitions=1))
    assert {(r.threads, r.thread_policy) for r in rows} == {(physical_cores(), f"adaptive, up to {physical_cores()}")}


def test_isolated_measurement_runs_in_a_child_and_reports_progress(package):
    steps: list[str] = []
    rows = measure_isolated(str(package("llama", "q8_0")), BenchSettings(n_prompt=16, n_gen=8, repetitions=2),
                            steps.append)
    assert [r.test for r in rows] == ["pp16", "tg8"]
    assert steps[0] == "loaded" and steps[-1] == "tg8 2/2"
    assert all(r.peak_rss_mb > 20 for r in rows)  # a Python process with a model, not this test's


def test_isolated_measurement_returns_the_childs_error(package, tmp_path):
    import shutil

    broken = shutil.copytree(package("llama", "q8_0"), tmp_path / "broken")
    gguf = next(broken.glob("*.gguf"))
    gguf.write_bytes(gguf.read_bytes()[:1000])
    with pytest.raises(LocalAIError, match="bytes, the manifest says"):
        measure_isolated(str(broken), BenchSettings(n_prompt=8, n_gen=0, repetitions=1))



def test_a_child_killed_by_a_signal_is_one_line_naming_it(package, tmp_path):
    """llama.cpp ends the process on some values (here a layer count past its 512) and prints nothing."""
    import shutil
    import struct

    broken = shutil.copytree(package("llama", "q8_0"), tmp_path / "broken")
    gguf = next(broken.glob("*.gguf"))
    raw = bytearray(gguf.read_bytes())
    key = b"llama.block_count"
    struct.pack_into("<I", raw, raw.index(key) + len(key) + 4, 10**6)  # after the value type; same size
    gguf.write_bytes(raw)
    with pytest.raises(LocalAIError, match=r"^benchmarking .*broken failed: the runtime aborted \(SIGABRT\) while "
                                           r"loading the model$"):
        measure_isolated(str(broken), BenchSettings(n_prompt=8, n_gen=0, repetitions=1))

def test_a_chat_that_outgrows_the_context_is_an_error_not_a_number(package):
    """Past the context the engine drops old turns: TTFT would then measure a trimmed conversation."""
    with pytest.raises(LocalAIError, match=r"outgrew the context of 4096 tokens at turn \d+"):
        measure(str(package("nemotron_h", "q8_0")), BenchSettings(n_prompt=0, n_gen=0, turns=400, repetitions=1))
