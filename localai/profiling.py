"""What a turn costs: memory probes (process RSS, NVIDIA GPU memory) and per-turn metrics with export.

GPU memory comes from NVML (nvidia-ml-py) when an NVIDIA driver is present; everywhere else it is None
and shown as n/a. Nothing here touches the network.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import psutil

from localai.chat import Final
from localai.files import write_text_atomic


def process_rss_bytes() -> int:
    """Resident memory of this process."""
    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int | None:
    """The most resident memory this process has held so far, where the OS keeps that figure."""
    try:
        import resource
    except ImportError:  # Windows keeps the peak working set instead
        peak = getattr(psutil.Process().memory_info(), "peak_wset", None)
        return int(peak) if peak is not None else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def machine_description(threads: int | None = None) -> dict[str, Any]:
    """CPU, memory, GPUs, OS and the versions of the libraries that do the work: what a benchmark ran on."""
    from localai.backends.threads import physical_cores

    nvml = _nvml()
    gpus = nvidia_gpus() or []
    try:
        driver = str(nvml.nvmlSystemGetDriverVersion()) if gpus else None
    except Exception:
        driver = None
    return {
        "cpu": _cpu_name(),
        "cpu_cores": psutil.cpu_count(logical=False),
        "cpu_threads": psutil.cpu_count(logical=True),
        "threads": threads or physical_cores(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": [name for name, _ in gpus],
        "gpu_driver": driver,
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES if _version(name)},
    }


LIBRARIES = ("localai", "llama-cpp-python", "onnxruntime", "onnxruntime-gpu", "numpy", "gguf", "tensorrt",
             "tensorrt-rtx")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:  # Linux names the model here; platform.processor() is often empty or just the architecture
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def _nvml() -> Any:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no package, no driver, no device: all mean "no NVIDIA GPU here"
        return None


def gpu_memory_used_bytes() -> int | None:
    """Memory in use on all NVIDIA GPUs, or None where NVML is unavailable."""
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        return sum(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(i)).used
                   for i in range(nvml.nvmlDeviceGetCount()))
    except Exception:
        return None


def nvidia_gpus() -> list[tuple[str, int]] | None:
    """(name, compute capability as 89) of every NVIDIA GPU, or None where NVML is unavailable (no driver)."""
    nvml = _nvml()
    if nvml is None:
        return None
    found = []
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            found.append((str(nvml.nvmlDeviceGetName(handle)), major * 10 + minor))
    except Exception:  # NVML present but failing: as good as no driver
        return None
    return found


def process_gpu_memory_bytes() -> int | None:
    """GPU memory this process holds on all NVIDIA GPUs, or None where NVML is unavailable or the process
    holds none (a CPU-only runtime)."""
    nvml = _nvml()
    if nvml is None:
        return None
    pid, total = os.getpid(), 0
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(i)):
                if process.pid == pid and process.usedGpuMemory:
                    total += int(process.usedGpuMemory)
    except Exception:  # NVML errors (no permission to list processes, driver hiccups): no figure
        return None
    return total or None


@dataclass(frozen=True)
class TurnMetrics:
    """One answered turn, as the profiling table and the exports show it."""

    turn: int
    finished_at: str
    finish_reason: str
    prompt_tokens: int
    reasoning_tokens: int
    answer_tokens: int
    ttft_ms: float | None
    prefill_tokens_per_s: float | None
    decode_tokens_per_s: float | None
    total_ms: float
    context_used: int
    context_limit: int
    rss_mb: float
    gpu_mb: float | None
    # the settings the turn ran with (`chat.turn_settings`), so figures tie back to the controls
    think: bool | None = None
    reasoning_budget: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None

    @classmethod
    def of(cls, turn: int, final: Final, context_limit: int, settings: dict[str, Any] | None = None) -> TurnMetrics:
        gpu = gpu_memory_used_bytes()
        return cls(
            **(settings or {}),
            turn=turn,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            finish_reason=final.finish_reason,
            prompt_tokens=final.usage.prompt_tokens,
            reasoning_tokens=final.usage.reasoning_tokens,
            answer_tokens=final.usage.completion_tokens - final.usage.reasoning_tokens,
            ttft_ms=final.timings.ttft_ms,
            prefill_tokens_per_s=final.timings.prefill_tokens_per_s,
            decode_tokens_per_s=final.timings.decode_tokens_per_s,
            total_ms=final.timings.total_ms,
            context_used=final.usage.prompt_tokens + len(final.tokens),
            context_limit=context_limit,
            rss_mb=round(process_rss_bytes() / 2**20, 1),
            gpu_mb=round(gpu / 2**20, 1) if gpu is not None else None,
        )


def metrics_csv(rows: list[TurnMetrics]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(TurnMetrics)], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return out.getvalue()


def metrics_json(rows: list[TurnMetrics]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2) + "\n"


def export_metrics(rows: list[TurnMetrics], path: Path) -> Path:
    """Write `rows` as CSV or JSON, chosen by the file's suffix."""
    text = metrics_json(rows) if path.suffix.lower() == ".json" else metrics_csv(rows)
    write_text_atomic(path, text)
    return path
