"""Thread counts that follow the load: the decision, the governor on real CPU accounting under a real
busy process, and what llama.cpp and ONNX Runtime are given. Speed itself is measured by
benchmarks/decode_under_load.py, never asserted here."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
import time

import numpy as np
import pytest

import localai
from localai.backends import threads
from localai.backends.threads import (
    CpuMeter,
    CpuSample,
    Governor,
    ThreadPolicy,
    physical_cores,
    threads_for,
)
from localai.errors import BackendError
from tests import zoo

BUSY_LOOP = "import time\nend = time.time() + 20\nwhile time.time() < end:\n    pass\n"
needs_two_cores = pytest.mark.skipif(physical_cores() < 2, reason="needs 2 or more physical cores to drop one")


class ScriptedMeter(CpuMeter):
    """CPU accounting as a list of samples, one per call, so that the governor's rules can be checked
    step by step (the real accounting is used by the tests below that start a busy process)."""

    def __init__(self, samples: list[CpuSample]) -> None:
        self.samples = list(samples)
        self.calls = 0

    def sample(self) -> CpuSample:
        self.calls += 1
        return self.samples.pop(0)


@pytest.fixture
def busy_process():
    """One CPU-bound process, stopped by the test (and by itself after 20 s)."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    yield proc
    proc.kill()
    proc.wait()


def test_a_fixed_policy_keeps_its_count_whatever_the_load():
    assert threads_for(ThreadPolicy.fixed(3), busy_elsewhere=5.0) == 3
    assert ThreadPolicy.fixed(3).describe() == "fixed 3"
    assert ThreadPolicy.from_option(3) == ThreadPolicy.fixed(3)


def test_the_default_policy_gives_up_the_cores_that_others_use():
    policy = ThreadPolicy.default()
    cores = physical_cores()
    assert policy == ThreadPolicy.from_option(None) and policy.threads == cores and policy.adaptive
    assert policy.describe() == f"adaptive, up to {cores}"
    assert threads_for(policy, busy_elsewhere=0.0) == cores
    assert threads_for(policy, busy_elsewhere=threads.SLACK_CORES) == cores  # an idle browser costs nothing
    assert threads_for(policy, busy_elsewhere=0.7) == max(1, cores - 1)  # a busy process sharing our cores
    assert threads_for(policy, busy_elsewhere=1.0) == max(1, cores - 1)
    assert threads_for(policy, busy_elsewhere=cores + 4.0) == 1  # never fewer than one


def test_a_policy_needs_one_thread_at_least():
    with pytest.raises(BackendError, match="threads must be at least 1, got 0"):
        ThreadPolicy.fixed(0)


def test_busy_elsewhere_is_the_machines_cpu_time_minus_this_processs():
    logical = __import__("psutil").cpu_count(logical=True)
    before, after = CpuSample(wall=10.0, busy=100.0, own=5.0), CpuSample(wall=12.0, busy=104.0, own=7.0)
    assert before.busy_elsewhere(after) == pytest.approx(1.0 * physical_cores() / logical)
    assert before.busy_elsewhere(CpuSample(wall=12.0, busy=100.5, own=7.0)) == 0.0  # clock skew never goes below 0
    assert before.busy_elsewhere(before) == 0.0


def test_the_governor_remeasures_only_after_its_interval(monkeypatch):
    monkeypatch.setattr(threads, "INTERVAL_S", 1000.0)
    meter = ScriptedMeter([CpuSample(time.monotonic(), 0.0, 0.0)])
    governor = Governor(ThreadPolicy.default(), meter)
    for _ in range(100):
        assert governor.update() == physical_cores()
    assert meter.calls == 1  # the sample taken at construction, none since


@needs_two_cores
def test_the_governor_follows_load_that_comes_and_goes(monkeypatch):
    monkeypatch.setattr(threads, "INTERVAL_S", 0.0)
    start = time.monotonic() - 10
    cores = physical_cores()
    meter = ScriptedMeter([CpuSample(start, 0.0, 0.0),
                           CpuSample(start + 1, 1.0, 1.0),      # only this process ran: every core
                           CpuSample(start + 2, 3.0, 2.0),      # someone else took a whole core
                           CpuSample(start + 3, 3.1, 2.9)])     # and stopped
    governor = Governor(ThreadPolicy.default(), meter)
    assert [governor.update() for _ in range(3)] == [cores, cores - 1, cores]


def test_a_fixed_governor_never_measures():
    governor = Governor(ThreadPolicy.fixed(2), ScriptedMeter([]))
    assert governor.update() == 2  # a measurement would pop from the empty script and fail


@needs_two_cores
def test_the_governor_drops_a_thread_while_a_real_process_keeps_a_core_busy(busy_process):
    governor = Governor(ThreadPolicy.default())
    deadline = time.monotonic() + 5
    while governor.update() == physical_cores() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert governor.threads == physical_cores() - 1


def test_llama_cpp_logits_do_not_depend_on_the_thread_count(package):
    """What lets the count change between calls: llama.cpp splits rows, never a sum, between threads,
    so 1 and 2 threads give bit-identical logits (full and incremental)."""
    tokens = zoo.random_tokens(40, 400, seed=7)
    results = []
    for n in (1, 2):
        model = localai.load(package("nemotron_h", "q8_0"), n_ctx=256, n_threads=n)
        full = model.backend.logits(tokens)
        model.backend.reset()
        model.backend.eval(tokens[:30])
        results.append((full, np.stack([model.backend.eval([t]) for t in tokens[30:]])))
        model.close()
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])


@needs_two_cores
def test_llama_cpp_decodes_on_fewer_threads_while_the_machine_is_busy(package, busy_process):
    model = localai.load(package("nemotron_h", "q8_0"), n_ctx=256)
    fixed = localai.load(package("nemotron_h", "q8_0"), n_ctx=256, n_threads=physical_cores())
    assert model.backend.thread_policy == f"adaptive, up to {physical_cores()}"
    assert fixed.backend.thread_policy == f"fixed {physical_cores()}"
    deadline = time.monotonic() + 5
    while model.backend.threads == physical_cores() and time.monotonic() < deadline:
        model.backend.eval([5])
        fixed.backend.eval([5])
        time.sleep(0.02)
        if model.backend.n_past > 200:
            model.backend.reset()
            fixed.backend.reset()
    assert model.backend.threads == physical_cores() - 1 and fixed.backend.threads == physical_cores()
    model.close()
    fixed.close()


def _spins(run) -> str:
    return run.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")


def test_onnx_runtime_spins_only_on_small_graphs_under_the_default_policy(onnx_package, monkeypatch):
    package = onnx_package("nemotron_h", "int4")
    default, fixed = localai.load(package, n_ctx=64), localai.load(package, n_ctx=64, n_threads=2)
    assert [_spins(run) for run in default.backend._runs] == ["0", "1"]
    assert default.backend.thread_policy == f"fixed {physical_cores()}, spinning while idle"
    assert [_spins(run) for run in fixed.backend._runs] == ["0"]
    assert fixed.backend.thread_policy == "fixed 2, no spinning" and fixed.backend.max_threads == 2
    monkeypatch.setattr(threads, "SPINNING_SESSION_MAX_BYTES", 1000)  # the zoo graph is over 1000 bytes
    large = localai.load(package, n_ctx=64)
    assert [_spins(run) for run in large.backend._runs] == ["0"]
    assert large.backend.thread_policy == f"fixed {physical_cores()}, no spinning"
    for model in (default, fixed, large):
        model.close()


def test_onnx_runtime_logits_do_not_depend_on_which_session_runs(onnx_package):
    """What lets the governor switch sessions between calls: same threads, same state buffers, so
    bit-identical logits whichever session runs each call (full and incremental)."""
    model = localai.load(onnx_package("nemotron_h", "int4"), n_ctx=128)
    backend = model.backend
    tokens = zoo.random_tokens(40, 400, seed=7)
    results = []
    for pattern in ([0], [backend.max_threads], [0, backend.max_threads]):  # quiet, spinning, alternating
        backend._governor.update = functools.partial(next, itertools.cycle(pattern))  # stands in for the load
        full = backend.logits(tokens)
        backend.reset()
        backend.eval(tokens[:30])
        steps = np.stack([backend.eval([t]) for t in tokens[30:]])
        results.append((full, steps, backend.spinning))
    model.close()
    assert [spun for _, _, spun in results[:2]] == [False, True]
    for full, steps, _ in results[1:]:
        assert np.array_equal(full, results[0][0]) and np.array_equal(steps, results[0][1])


@needs_two_cores
def test_onnx_runtime_stops_spinning_while_the_machine_is_busy(onnx_package, busy_process):
    model = localai.load(onnx_package("nemotron_h", "int4"), n_ctx=256)
    deadline = time.monotonic() + 5
    model.backend.eval([5])
    while model.backend.spinning and time.monotonic() < deadline:
        model.backend.eval([5])
        time.sleep(0.02)
        if model.backend.n_past > 200:
            model.backend.reset()
    assert not model.backend.spinning
    model.close()
