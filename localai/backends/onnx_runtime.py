"""ONNX Runtime backend for the decoder graphs `localai convert --to onnx` writes.

The graph takes the past states (KV per attention layer, conv and SSM per Mamba2 layer) as inputs and
returns the present ones; they stay ONNX Runtime values bound to the session's device between calls (I/O
binding), so decode never copies them through numpy. Tokenization uses the `tokenizers` library on the
package's tokenizer.json.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from localai.backends.base import BackendState, guarded
from localai.backends.graph import KV_CAPACITY, GraphBackend
from localai.backends.hf_tokenizer import PackageTokenizer
from localai.backends.threads import ONNX_RUNTIME_SPINNING, ThreadPolicy
from localai.errors import BackendError

PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
             "cpu": "CPUExecutionProvider"}
FALLBACK_ORDER = ("tensorrt", "cuda", "cpu")
# portable graph types ONNX Runtime's CPU provider has no kernels for
GPU_ONLY_QUANTS = {"bf16": "onnxruntime's CPU provider has no bfloat16 matrix product",
                   "nvfp4": "onnxruntime's CPU provider cannot dequantize float4"}
_registered: set[str] = set()


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for `device`. auto: CUDA if installed, else CPU; TensorRT only when
    asked for, since it builds engines for the shapes it meets (slow to start, and the `ort` flavour's
    contrib operators fall back to CUDA)."""
    available = ort.get_available_providers()
    if device == "auto":
        return [PROVIDERS[d] for d in ("cuda", "cpu") if PROVIDERS[d] in available]
    if device not in PROVIDERS:
        raise BackendError(f"unknown device {device!r}; choose from auto, {', '.join(PROVIDERS)}")
    if PROVIDERS[device] not in available:
        hint = {"cuda": " (install onnxruntime-gpu)",
                "tensorrt": " (install onnxruntime-ep-nv-tensorrt-rtx for RTX GPUs, or onnxruntime-gpu)"}
        raise BackendError(f"this onnxruntime has no {device} support{hint.get(device, '')}; it offers "
                           f"{', '.join(p.removesuffix('ExecutionProvider') for p in available)}")
    # the asked-for provider first; the ones after it take the operators it lacks
    return [PROVIDERS[d] for d in FALLBACK_ORDER[FALLBACK_ORDER.index(device):] if PROVIDERS[d] in available]


def tensorrt_rtx_plugin() -> tuple[str, str] | None:
    """(execution provider name, library path) of ONNX Runtime's TensorRT for RTX plugin, if installed."""
    try:
        import onnxruntime_ep_nv_tensorrt_rtx as plugin
    except ImportError:
        return None
    if not hasattr(plugin, "get_library_path"):  # a folder left behind by an uninstall
        return None
    return plugin.get_ep_name(), plugin.get_library_path()


def plugin_devices(name: str, library: str) -> list[Any]:
    """The GPUs a plugin execution provider offers, after registering its library with ONNX Runtime once."""
    if name not in _registered:
        try:
            ort.register_execution_provider_library(name, library)
        except Exception as exc:  # onnxruntime's own exception types
            raise BackendError(f"onnxruntime cannot load its TensorRT for RTX plugin: "
                               f"{_reason(exc)}") from exc
        _registered.add(name)
    devices = [d for d in ort.get_ep_devices() if d.ep_name == name]
    if not devices:
        raise BackendError("onnxruntime's TensorRT for RTX plugin finds no NVIDIA GPU")
    return devices


class OnnxRuntimeBackend(GraphBackend):
    """An ONNX decoder graph in one ONNX Runtime session, holding one sequence's states."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int | None = None, kv_cache: str = "f32",
                 device: str = "auto", n_batch: int = 512) -> None:
        super().__init__()
        manifest = self._open_manifest(path, n_ctx=n_ctx, kv_cache=kv_cache, kind="ONNX")
        spec = manifest.graph
        if not spec.get("inputs"):
            raise BackendError(f"package {manifest.name} does not describe its ONNX graph's inputs")
        options = ort.SessionOptions()
        # the thread pool is fixed for the session's life, so it cannot follow the load (threads.py): what
        # keeps decode up on a busy machine is that idle workers sleep instead of spinning
        threads = ThreadPolicy.from_option(n_threads).threads
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if ONNX_RUNTIME_SPINNING else "0")
        self.max_threads = threads
        self.thread_policy = f"fixed {threads}, {'spinning' if ONNX_RUNTIME_SPINNING else 'no spinning'}"
        options.log_severity_level = 3
        plugin = tensorrt_rtx_plugin() if device == "tensorrt" else None
        if plugin is not None:
            # the plugin takes what TensorRT compiles and the CPU the rest; states are bound in host memory,
            # since this onnxruntime (CPU build + plugin) has no CUDA allocator for them
            options.add_provider_for_devices(plugin_devices(*plugin), {})
            self.providers = [plugin[0], PROVIDERS["cpu"]]
        else:
            self.providers = providers_for(device)
        quant = next((a.quant for a in manifest.artifacts if a.format == "onnx"), "")
        if quant in GPU_ONLY_QUANTS and self.providers == [PROVIDERS["cpu"]]:
            raise BackendError(f"this {quant} graph needs a GPU runtime ({GPU_ONLY_QUANTS[quant]}): run it with "
                               "--device cuda or tensorrt, or convert with --quant fp16 or int4 for the CPU")
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=None if plugin else self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types for every load failure
            raise BackendError(f"onnxruntime cannot load {path.name}: {_reason(exc)}") from exc
        first = self._session.get_providers()[0]
        self.device = "tensorrt" if plugin else next(d for d, p in PROVIDERS.items() if p == first)
        self._device = "cpu" if plugin or self.device == "cpu" else "cuda"  # where OrtValues live
        self.n_ctx = n_ctx
        self.n_vocab = int(next(o for o in spec["outputs"] if o["name"] == "logits")["shape"][-1])
        self._n_batch = n_batch
        self._state_inputs = [i for i in spec["inputs"] if i["name"].startswith("past.")]
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._takes_past_length = any(i.name == "past_length" for i in self._session.get_inputs())
        self._tokenizer = PackageTokenizer(path.parent, manifest.tokenizer, self.n_vocab)
        self._shared = {s["name"]: SharedBuffer.allocate([self._concrete(d) for d in s["shape"]], self._device)
                        for s in self._state_inputs if KV_CAPACITY in s["shape"]}
        # GroupQueryAttention appends in place: each shared buffer is bound as its present output too
        self._shared_outputs = {name.replace("past.", "present.", 1): buffer.value
                                for name, buffer in self._shared.items()}
        self._states: dict[str, ort.OrtValue] = {}
        self._n_past = 0
        self._reset_states()

    @guarded
    def save_state(self) -> BackendState:
        # a call binds fresh outputs for every state but the shared K/V buffers and never writes into its
        # inputs, so those tensors stay valid as they are and the snapshot shares them; of a shared buffer,
        # which later calls write into, it copies the positions in use
        saved: dict[str, ort.OrtValue | np.ndarray] = {
            name: self._shared[name].prefix(self._n_past) if name in self._shared else value
            for name, value in self._states.items()}
        nbytes = sum(v.nbytes if isinstance(v, np.ndarray) else int(np.prod(v.shape())) * 4 for v in saved.values())
        return BackendState(self._n_past, nbytes, (self, saved))

    @guarded
    def load_state(self, state: BackendState) -> None:
        owner, saved = state.data if isinstance(state.data, tuple) else (None, None)
        if owner is not self:
            raise BackendError("this state was not taken by this ONNX Runtime model")
        for name, value in saved.items():
            if name in self._shared:
                self._shared[name].restore(value)
            else:
                self._states[name] = value
        self._n_past = state.n_past

    def close(self) -> None:
        """Release the session; waits for a call in progress on another thread. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._states.clear()
                self._shared.clear()
                self._shared_outputs.clear()
                del self._session

    def _reset_states(self) -> None:
        # a shared K/V buffer is kept: at n_past 0 nothing in it is read
        self._states = {s["name"]: self._shared[s["name"]].value if s["name"] in self._shared
                        else self._buffer([self._concrete(d) for d in s["shape"]]) for s in self._state_inputs}
        self._n_past = 0

    def _concrete(self, dim: Any) -> int:
        """A state's starting size: one sequence, no past tokens; a shared K/V buffer holds the context."""
        if isinstance(dim, int):
            return dim
        return {"batch": 1, KV_CAPACITY: self.n_ctx}.get(dim, 0)

    def _buffer(self, shape: list[int]) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32), self._device, 0)

    def _step(self, chunk: list[int], *, keep: int) -> np.ndarray:
        binding = self._session.io_binding()
        binding.bind_cpu_input("input_ids", np.asarray([chunk], np.int64))
        binding.bind_cpu_input("logits_to_keep", np.asarray(keep, np.int64))
        if self._takes_past_length:
            binding.bind_cpu_input("past_length", np.asarray(self._n_past, np.int64))
        for name, value in self._states.items():
            binding.bind_ortvalue_input(name, value)
        for name in self._output_names:
            if name in self._shared_outputs:
                binding.bind_ortvalue_output(name, self._shared_outputs[name])
            else:
                binding.bind_output(name, "cpu" if name == "logits" else self._device)
        try:
            self._session.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime's own exception types
            raise BackendError(f"onnxruntime failed: {_reason(exc)}") from exc
        outputs = dict(zip(self._output_names, binding.get_outputs(), strict=True))
        self._states = {name: self._shared[name].value if name in self._shared
                        else outputs[name.replace("past.", "present.", 1)] for name in self._states}
        self._n_past += len(chunk)
        return np.array(outputs["logits"].numpy()[0])  # a copy: .numpy() views ORT's buffer


@dataclass
class SharedBuffer:
    """A K/V state that is one buffer for past and present: GroupQueryAttention writes the new positions
    into it, so a snapshot copies the positions in use and restoring one writes them back."""

    value: ort.OrtValue
    host: np.ndarray | None  # the same memory as a numpy array, where it lives on the CPU

    @classmethod
    def allocate(cls, shape: list[int], device: str) -> SharedBuffer:
        if device == "cpu":  # the OrtValue wraps the array's memory
            host = np.zeros(shape, np.float32)
            return cls(ort.OrtValue.ortvalue_from_numpy(host, "cpu", 0), host)
        return cls(ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32), device, 0), None)

    def prefix(self, n: int) -> np.ndarray:
        """A copy of the first `n` positions."""
        return (self.value.numpy() if self.host is None else self.host)[:, :, :n].copy()

    def restore(self, prefix: np.ndarray) -> None:
        """Write `prefix` back as the first positions (the later ones are not read)."""
        if self.host is not None:
            self.host[:, :, : prefix.shape[2]] = prefix
            return
        full = self.value.numpy()
        full[:, :, : prefix.shape[2]] = prefix
        self.value.update_inplace(full)


def _reason(exc: Exception) -> str:
    """The first line of an onnxruntime error, without its "[ONNXRuntimeError] : 1 : FAIL : " prefix."""
    text = str(exc).strip()
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text.splitlines()[0]) if text else type(exc).__name__

