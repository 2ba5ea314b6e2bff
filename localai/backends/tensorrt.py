"""TensorRT engines (`localai convert --to tensorrt`): they run on NVIDIA GPUs only.

What this version does: it says in one line why an engine cannot run on this machine, checked in the
order a user would fix things: no NVIDIA driver, no GPU, a GPU the engine was not built for, no
TensorRT module. Executing engines (state tensors kept on the GPU through cuda-bindings, the backend
protocol of base.py) is not written yet: no GPU has been available to develop and test it on, and
code that never ran is not shipped as a feature. See docs/tensorrt.md.
"""

from __future__ import annotations

from pathlib import Path

from localai import profiling
from localai.errors import BackendError, PackageError
from localai.package import Package


class TensorRTBackend:
    """A TensorRT engine package; refuses to load where the engine cannot run (see the module docstring)."""

    name = "tensorrt"
    device = "tensorrt"

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int | None = None, kv_cache: str = "f32",
                 device: str = "auto", n_batch: int = 512) -> None:
        if device not in ("auto", "tensorrt", "cuda"):
            raise BackendError(f"a TensorRT engine runs on an NVIDIA GPU only (asked for {device!r})")
        try:
            engine = Package.open(path.parent).manifest.graph.get("tensorrt", {})
        except PackageError as exc:
            raise BackendError(f"{path.name} is not inside a localai TensorRT package: {exc}") from exc
        targets = [int(cc.replace(".", "")) for cc in engine.get("compute_capabilities", []) if cc[0].isdigit()]
        found = profiling.nvidia_gpus()
        if found is None:
            raise BackendError("no NVIDIA driver found (NVML is unavailable): TensorRT engines need an NVIDIA GPU")
        if not found:
            raise BackendError("no NVIDIA GPU found: TensorRT engines run on NVIDIA GPUs only")
        name, capability = found[0]
        if targets and capability not in targets:
            built_for = ", ".join(f"{t // 10}.{t % 10}" for t in targets)
            raise BackendError(f"this GPU ({name}, compute capability {capability // 10}.{capability % 10}) is not "
                               f"among the engine's targets ({built_for}): convert again with "
                               f"--compute-capability {capability}")
        from localai import tensorrt_lib

        tensorrt_lib.load()
        if n_ctx > engine.get("max_context", n_ctx):
            raise BackendError(f"the engine serves at most {engine['max_context']} tokens of context "
                               f"(asked for {n_ctx}); convert again with --max-context")
        raise BackendError("running TensorRT engines is not implemented in this version of localai yet (the "
                           "engine itself was built); convert the checkpoint with --to onnx to run it meanwhile")
