"""The machine and this process: memory probes (process RSS and peak, NVIDIA GPU memory), the GPUs present
and a description of the machine for benchmark reports. Backends and the chat app's profiling both use
these, so the module depends on nothing else in localai.

GPU memory comes from NVML (nvidia-ml-py) when an NVIDIA driver is present; everywhere else it is None
and shown as n/a. Nothing here touches the network.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from functools import cache
from pathlib import Path
from typing import Any

import psutil


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
