"""ONNX Runtime backend for the decoder graphs `localai convert --to onnx` writes.

The graph takes the past states (KV per attention layer, conv and SSM per Mamba2 layer) as inputs and
returns the present ones; they stay ONNX Runtime values bound to the session's device between calls (I/O
binding), so decode never copies them through numpy. States the graph writes in place (`SharedBuffer`)
are bound once per session, as are a one-token call's inputs and logits (`_Feeds`). A small graph has
two sessions over the same buffers, one whose workers spin, run while the machine is idle (threads.py).
Tokenization uses the `tokenizers` library on the package's tokenizer.json.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from localai.backends.base import BackendState, guarded
from localai.backends.graph import KV_CAPACITY, GraphBackend
from localai.backends.hf_tokenizer import PackageTokenizer
from localai.backends.threads import SPINNING_DESCRIPTION, Governor, ThreadPolicy, onnx_runtime_spinning
from localai.errors import BackendError
from localai.package import Artifact, Package

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

    def __init__(self, package: Package, artifact: Artifact, *, n_ctx: int, n_threads: int | None = None,
                 kv_cache: str = "f32", device: str = "auto", n_batch: int = 512) -> None:
        super().__init__()
        self._check_options(n_ctx, kv_cache, "ONNX")
        manifest, path = package.manifest, package.path_of(artifact)
        spec = manifest.graph
        if not spec.get("inputs"):
            raise BackendError(f"package {manifest.name} does not describe its ONNX graph's inputs")
        policy = ThreadPolicy.from_option(n_threads)
        plugin = tensorrt_rtx_plugin() if device == "tensorrt" else None
        # the plugin takes what TensorRT compiles and the CPU the rest; states are bound in host memory,
        # since this onnxruntime (CPU build + plugin) has no CUDA allocator for them
        self.providers = [plugin[0], PROVIDERS["cpu"]] if plugin else providers_for(device)
        quant = next((a.quant for a in manifest.artifacts if a.format == "onnx"), "")
        if quant in GPU_ONLY_QUANTS and self.providers == [PROVIDERS["cpu"]]:
            raise BackendError(f"this {quant} graph needs a GPU runtime ({GPU_ONLY_QUANTS[quant]}): run it with "
                               "--device cuda or tensorrt, or convert with --quant fp16 or int4 for the CPU")
        spinning = onnx_runtime_spinning(policy, sum(a.bytes for a in manifest.artifacts
                                                     if a.format in ("onnx", "onnx-data")))
        runs = [self._open(path, policy.threads, spinning=spinning == "always", plugin=plugin)]
        first = runs[0].session.get_providers()[0]
        self.device = "tensorrt" if plugin else next(d for d, p in PROVIDERS.items() if p == first)
        self._device = "cpu" if plugin or self.device == "cpu" else "cuda"  # where OrtValues live
        if spinning == "while idle" and self.device == "cpu":
            runs.append(self._open(path, policy.threads, spinning=True, plugin=None))
        elif spinning == "while idle":  # a GPU runs the graph: the CPU threads hardly matter
            spinning = "never"
        self._runs = runs  # [workers sleep or spin always] + [workers spin], chosen per call by the governor
        self._governor = Governor(policy)
        self.max_threads = policy.threads
        self.thread_policy = f"fixed {policy.threads}, {SPINNING_DESCRIPTION[spinning]}"
        self.spinning = False  # whether the last call ran on workers that spin
        self.n_ctx = n_ctx
        self.n_vocab = int(next(o for o in spec["outputs"] if o["name"] == "logits")["shape"][-1])
        self._n_batch = n_batch
        self._state_inputs = [i for i in spec["inputs"] if i["name"].startswith("past.")]
        self._takes_past_length = any(i.name == "past_length" for i in runs[0].session.get_inputs())
        self._tokenizer = PackageTokenizer(path.parent, manifest.tokenizer, self.n_vocab)
        self._shared = {s["name"]: SharedBuffer.allocate([self._concrete(d) for d in s["shape"]], self._device,
                                                         positions=KV_CAPACITY in s["shape"])
                        for s in self._state_inputs if self._shares(s)}
        self._feeds = _Feeds.allocate(self.n_vocab)
        for run in runs:
            self._bind_once(run)
        # the binding's output order: bound first, kept when bound again
        self._bound_outputs = ([_present(name) for name in self._shared] + ["logits"]
                               + [_present(s["name"]) for s in self._state_inputs if s["name"] not in self._shared])
        self._states: dict[str, ort.OrtValue] = {}
        self._n_past = 0
        self._reset_states()

    @guarded
    def save_state(self) -> BackendState:
        # a call binds fresh outputs for every state but the shared buffers and never writes into its other
        # inputs, so those tensors stay valid as they are and the snapshot shares them; of a shared buffer,
        # which later calls write into, it copies what is in use
        saved: dict[str, ort.OrtValue | np.ndarray] = {
            name: self._shared[name].snapshot(self._n_past) if name in self._shared else value
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
                self._runs.clear()

    def _reset_states(self) -> None:
        for buffer in self._shared.values():
            buffer.clear()
        self._states = {s["name"]: self._shared[s["name"]].value if s["name"] in self._shared
                        else self._buffer([self._concrete(d) for d in s["shape"]]) for s in self._state_inputs}
        self._n_past = 0

    def _open(self, path: Path, threads: int, *, spinning: bool, plugin: tuple[str, str] | None) -> _Run:
        """A session of the graph on `self.providers` (the plugin's devices if given) and its binding."""
        options = ort.SessionOptions()
        # the thread pool is fixed for the session's life, so it cannot follow the load (threads.py)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.log_severity_level = 3
        if plugin is not None:
            options.add_provider_for_devices(plugin_devices(*plugin), {})
        try:
            session = ort.InferenceSession(str(path), options, providers=None if plugin else self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types for every load failure
            raise BackendError(f"onnxruntime cannot load {path.name}: {_reason(exc)}") from exc
        return _Run(session, session.io_binding(), spinning)

    def _bind_once(self, run: _Run) -> None:
        """What a binding keeps for the session's life: each shared buffer as its past input and its present
        output, the past length, and the logits of a one-token call, so such a call binds only the token
        (a fixed buffer too) and the states that have no shared buffer."""
        for name, buffer in self._shared.items():
            run.binding.bind_ortvalue_input(name, buffer.value)
            run.binding.bind_ortvalue_output(_present(name), buffer.value)
        if self._takes_past_length:
            run.binding.bind_ortvalue_input("past_length", self._feeds.past_length_value)
        run.bind_output("logits", self._feeds.logits_value)

    def _shares(self, spec: dict[str, Any]) -> bool:
        """Whether one buffer is bound as the state's past and present. Always for a K/V buffer of the
        context's length (GroupQueryAttention appends to it in place). For a state the graph marks
        `in_place`, only on the CPU: its kernels were checked to give bit-identical results that way
        (tests/localai/backends/test_onnx_runtime.py); other providers' kernels were not."""
        return KV_CAPACITY in spec["shape"] or (spec.get("in_place") is True and self._device == "cpu")

    def _concrete(self, dim: Any) -> int:
        """A state's starting size: one sequence, no past tokens; a shared K/V buffer holds the context."""
        if isinstance(dim, int):
            return dim
        return {"batch": 1, KV_CAPACITY: self.n_ctx}.get(dim, 0)

    def _buffer(self, shape: list[int]) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32), self._device, 0)

    def _step(self, chunk: list[int], *, keep: int) -> np.ndarray:
        # the spinning session while no other process uses the cores, else the one whose workers sleep
        run = self._runs[-1] if self._governor.update() == self.max_threads else self._runs[0]
        self.spinning = run.spins
        feeds = self._feeds
        feeds.past_length[()] = self._n_past
        if len(chunk) == 1:
            feeds.token[0, 0] = chunk[0]
        run.bind_input("input_ids", feeds.token_value if len(chunk) == 1 else np.asarray([chunk], np.int64))
        run.bind_input("logits_to_keep", feeds.keep_value if keep == 1 else np.asarray(keep, np.int64))
        run.bind_output("logits", feeds.logits_value if keep == 1 else "cpu")
        for name, value in self._states.items():
            if name not in self._shared:
                run.binding.bind_ortvalue_input(name, value)
                # allocated by the run, so never last call's outputs (now inputs)
                run.binding.bind_output(_present(name), self._device)
        try:
            run.session.run_with_iobinding(run.binding)
        except Exception as exc:  # onnxruntime's own exception types
            raise BackendError(f"onnxruntime failed: {_reason(exc)}") from exc
        self._n_past += len(chunk)
        if keep == 1 and len(self._shared) == len(self._states):  # nothing to read back from the binding
            return feeds.logits[0].copy()
        outputs = dict(zip(self._bound_outputs, run.binding.get_outputs(), strict=True))
        self._states = {name: self._shared[name].value if name in self._shared else outputs[_present(name)]
                        for name in self._states}
        return np.array(outputs["logits"].numpy()[0])  # a copy: .numpy() views ORT's buffer


@dataclass
class _Feeds:
    """A call's inputs and logits in buffers bound once and written in place, for the usual one-token,
    last-logits call: binding a value costs a few µs and reading a binding's outputs back (one Python
    object per output) about 40, against a token's 1 ms on the demo graph. Shared by a model's sessions."""

    token: np.ndarray  # [1, 1] int64
    keep: np.ndarray  # () int64: always 1
    past_length: np.ndarray  # () int64, bound once in every call that takes it
    logits: np.ndarray  # [1, 1, n_vocab] float32
    token_value: ort.OrtValue
    keep_value: ort.OrtValue
    past_length_value: ort.OrtValue
    logits_value: ort.OrtValue

    @classmethod
    def allocate(cls, n_vocab: int) -> _Feeds:
        arrays = (np.zeros((1, 1), np.int64), np.ones((), np.int64), np.zeros((), np.int64),
                  np.zeros((1, 1, n_vocab), np.float32))  # each OrtValue wraps its array's memory
        return cls(*arrays, *(ort.OrtValue.ortvalue_from_numpy(a, "cpu", 0) for a in arrays))


@dataclass
class _Run:
    """A session of the graph and its I/O binding, on which the shared buffers stay bound."""

    session: ort.InferenceSession
    binding: ort.IOBinding
    spins: bool
    bound: dict[str, ort.OrtValue | None] = field(default_factory=dict)  # a fixed value, or None: fresh

    def bind_input(self, name: str, value: ort.OrtValue | np.ndarray) -> None:
        """Bind a fixed value once, a fresh array every time."""
        if isinstance(value, np.ndarray):
            self.binding.bind_cpu_input(name, value)
            self.bound[name] = None
        elif self.bound.get(name) is not value:
            self.binding.bind_ortvalue_input(name, value)
            self.bound[name] = value

    def bind_output(self, name: str, value: ort.OrtValue | str) -> None:
        """Bind a fixed value once, or an output the run allocates on device `value` every time."""
        if isinstance(value, str):
            self.binding.bind_output(name, value)
            self.bound[name] = None
        elif self.bound.get(name) is not value:
            self.binding.bind_ortvalue_output(name, value)
            self.bound[name] = value


@dataclass
class SharedBuffer:
    """A state that is one buffer for past and present: the graph writes into it (GroupQueryAttention the
    new positions of a K/V buffer, LinearAttention a whole SSM state), so a snapshot is a copy of what is
    in use and restoring one writes it back."""

    value: ort.OrtValue
    host: np.ndarray | None  # the same memory as a numpy array, where it lives on the CPU
    positions: bool  # axis 2 counts tokens (a K/V buffer): only the first n_past are in use

    @classmethod
    def allocate(cls, shape: list[int], device: str, *, positions: bool) -> SharedBuffer:
        if device == "cpu":  # the OrtValue wraps the array's memory
            host = np.zeros(shape, np.float32)
            return cls(ort.OrtValue.ortvalue_from_numpy(host, "cpu", 0), host, positions)
        return cls(ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32), device, 0), None, positions)

    def snapshot(self, n_past: int) -> np.ndarray:
        """A copy of what is in use after `n_past` tokens."""
        full = self.value.numpy() if self.host is None else self.host
        return (full[:, :, :n_past] if self.positions else full).copy()

    def restore(self, saved: np.ndarray) -> None:
        """Write a snapshot back: its positions first, where the buffer has them (the later ones are not
        read)."""
        def put(full: np.ndarray) -> None:
            full[:, :, : saved.shape[2]] = saved
        self._write(put)

    def clear(self) -> None:
        """The state of no tokens: zeros, except in a K/V buffer, of which nothing is read at n_past 0."""
        if not self.positions:
            self._write(lambda full: full.fill(0.0))

    def _write(self, change: Callable[[np.ndarray], None]) -> None:
        if self.host is not None:
            change(self.host)
            return
        full = self.value.numpy()
        change(full)
        self.value.update_inplace(full)


def _present(past: str) -> str:
    return past.replace("past.", "present.", 1)


def _reason(exc: Exception) -> str:
    """The first line of an onnxruntime error, without its "[ONNXRuntimeError] : 1 : FAIL : " prefix."""
    text = str(exc).strip()
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text.splitlines()[0]) if text else type(exc).__name__

