"""How many CPU threads a runtime uses, and how it waits: chosen so that decode survives a busy machine.

A runtime splits each operator of a step across its threads and waits for all of them before the next
one: llama.cpp passes hundreds of such barriers per token. When another process keeps a core busy, the
OS deschedules one of those threads for a time slice (milliseconds) and every barrier waits for it.
Measured on a 2-core machine with one busy-loop process running (docs/benchmarks.md, "Decode under
load"), 2 llama.cpp threads decoded the demo model at x0.16 of their idle speed and a ~250M model at
x0.30, where 1 thread kept x0.81 and x0.55 of the 2-thread idle speed. So:

- **llama.cpp** (`Governor`): the thread count of every call follows the cores that other processes
  leave free, re-measured from the OS's CPU accounting at most every `INTERVAL_S`; llama.cpp takes a
  new count per call (`llama_set_n_threads`) at no cost. Idle, it uses every physical core. OpenMP's
  default wait policy stays: `OMP_WAIT_POLICY=passive` cost x0.23 of idle decode on the demo model
  (each barrier becomes a futex wake-up), and with the adaptive count no barrier waits for a
  descheduled thread long enough for spinning to matter.
- **ONNX Runtime** fixes its thread pool when a session is created, so it cannot follow the load.
  Its caller thread takes over work that a worker has not started, which already softens the blow;
  what remains is the idle worker spinning for work and taking CPU from the thread that has it. With
  spinning off, a ~250M model kept x0.82 of its idle decode under load instead of x0.48. Idle, not
  spinning costs speed wherever operators are short: on the 3.5M demo graph x0.67-0.92 of the spinning
  speed in three runs (each operator wakes the worker), on the ~250M graph x0.835 once its states were
  written in place (x0.97 before that); one thread instead of two, tried as well, x0.63 on the demo.
  So a graph of at most `SPINNING_SESSION_MAX_BYTES` gets two sessions on the same thread count and
  the same state buffers, one spinning and one not (`onnx_runtime_spinning`), and the governor picks
  one per call: the spinning one while no other process uses the cores. Their results are
  bit-identical (same threads, same work split; tested). The second session costs a copy of the
  weights (ONNX Runtime packs them per session: 304 -> 516 MB RSS for the ~250M int4 graph of 213 MB)
  and buys idle decode speed that falls with the graph's size, paired measurements in one process:
  x1.28 on the 3.5M demo graph, x1.075 on the 213 MB one, so about the 3% of the idle goal near
  512 MB. Larger graphs get only the session that does not spin.

`--threads N` fixes the count at N (`ThreadPolicy.fixed`): no adaptation, for measurements and for
users who know their machine.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import cache
from typing import Literal

import psutil

from localai.errors import BackendError

INTERVAL_S = 0.2  # how often the free cores are re-measured: a collapse lasts at most about this long
OVERSUBSCRIPTION = 4  # most threads per logical CPU a fixed count may ask for
SLACK_CORES = 0.3  # other processes' use below this many cores (a terminal, an idle browser) is ignored
SpinPolicy = Literal["never", "while idle", "always"]
ONNX_RUNTIME_SPINNING: SpinPolicy = "while idle"  # "always" is what localai did before 2026-12-01
# a second, spinning session for graphs of at most this many bytes of weights (its memory is a copy)
SPINNING_SESSION_MAX_BYTES = 512 << 20
SPINNING_DESCRIPTION: dict[SpinPolicy, str] = {"never": "no spinning", "while idle": "spinning while idle",
                                               "always": "spinning"}


@cache
def physical_cores() -> int:
    """Physical cores: runtimes run no faster on hyper-threads and slower when oversubscribed. Read once:
    psutil parses the OS's CPU list each time (about 0.2 ms), and the governor asks every `INTERVAL_S`."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@cache
def logical_cores() -> int:
    return psutil.cpu_count(logical=True) or 1


@dataclass(frozen=True)
class ThreadPolicy:
    """At most `threads` threads; `adaptive`: fewer while other processes use the cores."""

    threads: int
    adaptive: bool

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise BackendError(f"threads must be at least 1, got {self.threads}")
        # more only oversubscribes; thousands crash the runtimes (libgomp, llama.cpp's thread pool)
        if self.threads > OVERSUBSCRIPTION * logical_cores():
            raise BackendError(f"threads must be at most {OVERSUBSCRIPTION * logical_cores()} ({OVERSUBSCRIPTION} per "
                               f"CPU thread of this machine), got {self.threads}")

    @classmethod
    def fixed(cls, threads: int) -> ThreadPolicy:
        return cls(threads, adaptive=False)

    @classmethod
    def default(cls) -> ThreadPolicy:
        return cls(physical_cores(), adaptive=True)

    @classmethod
    def from_option(cls, threads: int | None) -> ThreadPolicy:
        """`--threads`: a number fixes the count; None (the default) adapts up to the physical cores."""
        return cls.default() if threads is None else cls.fixed(threads)

    def describe(self) -> str:
        return f"adaptive, up to {self.threads}" if self.adaptive else f"fixed {self.threads}"


def onnx_runtime_spinning(policy: ThreadPolicy, weight_bytes: int) -> SpinPolicy:
    """Whether ONNX Runtime's workers spin for a graph of `weight_bytes` under `policy`: while the machine
    is idle only for small graphs under an adaptive policy; a fixed count (`--threads`) never spins
    unless ONNX_RUNTIME_SPINNING says "always"."""
    if ONNX_RUNTIME_SPINNING == "while idle" and not (policy.adaptive and weight_bytes <= SPINNING_SESSION_MAX_BYTES):
        return "never"
    return ONNX_RUNTIME_SPINNING


def threads_for(policy: ThreadPolicy, busy_elsewhere: float) -> int:
    """The threads to use while other processes keep `busy_elsewhere` physical cores' worth busy."""
    if not policy.adaptive:
        return policy.threads
    taken = max(0, math.ceil(busy_elsewhere - SLACK_CORES))
    return max(1, min(policy.threads, physical_cores() - taken))


@dataclass(frozen=True)
class CpuSample:
    """Seconds of wall clock, of busy CPU on the whole machine, and of CPU used by this process."""

    wall: float
    busy: float
    own: float

    def busy_elsewhere(self, later: CpuSample) -> float:
        """Physical cores' worth of CPU that other processes used between this sample and `later`."""
        wall = later.wall - self.wall
        if wall <= 0:
            return 0.0
        others = max(0.0, (later.busy - self.busy) - (later.own - self.own)) / wall
        return others * physical_cores() / logical_cores()


class CpuMeter:
    """Samples the OS's CPU accounting: the whole machine's and this process's."""

    def __init__(self) -> None:
        self._process = psutil.Process()

    def sample(self) -> CpuSample:
        machine = psutil.cpu_times()
        # steal: time the hypervisor gave to other machines, as unavailable to our threads as a busy core
        busy = sum(getattr(machine, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
        own = self._process.cpu_times()
        return CpuSample(time.monotonic(), busy, own.user + own.system)


class Governor:
    """The thread count for a runtime's next call under `policy`, re-measured every `INTERVAL_S`."""

    def __init__(self, policy: ThreadPolicy, meter: CpuMeter | None = None) -> None:
        self.policy = policy
        self.threads = policy.threads
        self._meter = (meter or CpuMeter()) if policy.adaptive else None
        self._last = self._meter.sample() if self._meter else None

    def update(self) -> int:
        """The thread count to use now. Cheap: one clock read, and a measurement every `INTERVAL_S`."""
        if self._meter is None or self._last is None or time.monotonic() - self._last.wall < INTERVAL_S:
            return self.threads
        now = self._meter.sample()
        self.threads = threads_for(self.policy, self._last.busy_elsewhere(now))
        self._last = now
        return self.threads
