"""TensorRT engines (`localai convert --to tensorrt`) on an NVIDIA GPU.

The engine is the portable ONNX graph compiled: `input_ids`, `logits_to_keep` (a shape input, so it
lives in host memory) and the past states in; logits and the present states out. Each state tensor has
two GPU buffers sized for the whole context: a step reads one and writes the other, then they swap, so
states stay on the GPU between steps and only token ids and the kept logits cross the bus. The engine
has two optimization profiles (prefill: 1..max_prefill tokens; decode: 1 token) and this backend holds
one execution context on each, so that switching between them costs nothing.

Before touching the GPU it says in one line why an engine cannot run here, checked in the order a user
would fix things: no NVIDIA driver, no GPU, a GPU the engine was not built for, no TensorRT module, a
context larger than the engine serves.

GPU memory and the stream come from `open_gpu()` and the engine from `deserialize()`: the two calls
that need a GPU, which the CPU tests replace (tests/localai/backends/fake_gpu.py). Everything else
here runs in those tests against the real TensorRT module's types.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from localai import machine, tensorrt_lib
from localai.backends.base import BackendState, guarded
from localai.backends.cuda_device import CudaDevice
from localai.backends.graph import GraphBackend
from localai.backends.hf_tokenizer import PackageTokenizer
from localai.errors import BackendError, LocalAIError
from localai.package import Artifact, Package

PREFILL, DECODE = 0, 1  # optimization profiles, in the order converters/to_tensorrt.py adds them
LOGITS_TO_KEEP = "logits_to_keep"


def open_gpu() -> CudaDevice:
    """GPU memory and a stream on device 0."""
    return CudaDevice()


def deserialize(trt: Any, logger: Any, data: bytes) -> tuple[Any, Any]:
    """(runtime, engine) for a serialized engine; the runtime must outlive the engine."""
    runtime = trt.Runtime(logger)
    return runtime, runtime.deserialize_cuda_engine(data)


@dataclass
class _State:
    """One state tensor: `past.*` in, `present.*` out, in two GPU buffers that swap after every step."""

    name: str
    output: str
    dims: list[Any]  # the ONNX graph's: ints, "batch" and "past_sequence"
    dtype: np.dtype
    buffers: list[int] = field(default_factory=list)
    current: int = 0  # the buffer holding the state now

    def shape(self, n_past: int) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else 1 if d == "batch" else n_past for d in self.dims)

    def nbytes(self, n_past: int) -> int:
        return int(np.prod(self.shape(n_past))) * self.dtype.itemsize

    @property
    def grows(self) -> bool:
        return "past_sequence" in self.dims


class TensorRTBackend(GraphBackend):
    """A TensorRT engine with one execution context per optimization profile, holding one sequence's
    states on the GPU."""

    name = "tensorrt"
    device = "tensorrt"
    max_threads = 1  # the calling thread, which only launches GPU work
    thread_policy = "GPU"

    def __init__(self, package: Package, artifact: Artifact, *, n_ctx: int, n_threads: int | None = None,
                 kv_cache: str = "f32", device: str = "auto", n_batch: int = 512) -> None:
        super().__init__()
        if device not in ("auto", "tensorrt", "cuda"):
            raise BackendError(f"a TensorRT engine runs on an NVIDIA GPU only (asked for {device!r})")
        self._check_options(n_ctx, kv_cache, "TensorRT")
        manifest, path = package.manifest, package.path_of(artifact)
        built = manifest.graph.get("tensorrt", {})
        _check_machine(built)
        try:
            trt = tensorrt_lib.load(built.get("library"))
        except LocalAIError as exc:
            raise BackendError(str(exc)) from None
        # an engine runs on the TensorRT release that built it
        if built.get("version", trt.__version__).split(".")[:3] != trt.__version__.split(".")[:3]:
            raise BackendError(f"the engine was built by {trt.__name__} {built['version']}, this is "
                               f"{trt.__version__}: convert again")
        if n_ctx > built.get("max_context", n_ctx):
            raise BackendError(f"the engine serves at most {built['max_context']} tokens of context "
                               f"(asked for {n_ctx}); convert again with --max-context")
        self._trt = trt
        self.n_ctx = n_ctx
        self.n_vocab = int(next(o for o in manifest.graph["outputs"] if o["name"] == "logits")["shape"][-1])
        self._n_batch = min(n_batch, int(built["max_prefill"]))
        self._tokenizer = PackageTokenizer(path.parent, manifest.tokenizer, self.n_vocab)
        self._n_past = 0
        self._gpu = open_gpu()
        self._addresses: list[int] = []
        # frees the GPU memory however the backend ends: close(), a failed load, or garbage collection
        self._free = weakref.finalize(self, _free_gpu, self._gpu, self._addresses)
        try:
            self._load_engine(path)
            self._allocate([spec for spec in manifest.graph["inputs"] if spec["name"].startswith("past.")])
            self._reset_states()
        except BaseException:
            self._release()
            raise

    def _load_engine(self, path: Path) -> None:
        self._logger = tensorrt_lib.error_logger(self._trt)
        self._logger.clear()
        self._runtime, self._engine = deserialize(self._trt, self._logger, path.read_bytes())
        if self._engine is None:
            raise BackendError(f"TensorRT cannot load {path.name}: {self._logger.last_error or 'no reason given'}")
        if self._engine.num_optimization_profiles != 2:
            raise BackendError(f"{path.name} has {self._engine.num_optimization_profiles} optimization profiles, "
                               "not localai's prefill and decode: convert again")
        if not self._engine.is_shape_inference_io(LOGITS_TO_KEEP):
            raise BackendError(f"{path.name} does not take {LOGITS_TO_KEEP} as a shape input: convert again")
        self._config = self._runtime_config()
        self._contexts = []
        for profile in (PREFILL, DECODE):
            context = self._engine.create_execution_context(self._config)
            if context is None or not context.set_optimization_profile_async(profile, self._gpu.stream):
                raise BackendError(f"TensorRT cannot create an execution context: {self._logger.last_error}")
            self._contexts.append(context)
        # the contexts take turns on one stream, so one block of scratch memory serves both
        size = int(self._engine.device_memory_size_v2)
        scratch = self._alloc(size)
        for context in self._contexts:
            context.set_device_memory(scratch, size)
        self._gpu.synchronize()

    def _runtime_config(self) -> Any:
        """Contexts whose scratch memory this backend provides (one block for both) and, with TensorRT for
        RTX, that run the kernels built for dynamic shapes rather than compiling new ones for each shape
        met: the past length changes with every token, so a kernel specialised for one is rarely reused."""
        config = self._engine.create_runtime_config()
        config.set_execution_context_allocation_strategy(self._trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if hasattr(config, "dynamic_shapes_kernel_specialization_strategy"):
            config.dynamic_shapes_kernel_specialization_strategy = (
                self._trt.DynamicShapesKernelSpecializationStrategy.NONE)
        return config

    def _dtype(self, name: str) -> np.dtype:
        try:
            return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
        except TypeError:
            raise BackendError(f"the engine's {name} is {self._engine.get_tensor_dtype(name)}, which localai cannot "
                               "read") from None

    def _allocate(self, state_specs: list[dict[str, Any]]) -> None:
        """Two buffers per state, for the whole context; one for the ids and one for the logits of a batch."""
        self._states = [_State(spec["name"], spec["name"].replace("past.", "present.", 1), spec["shape"],
                               self._dtype(spec["name"])) for spec in state_specs]
        for state in self._states:
            state.buffers = [self._alloc(state.nbytes(self.n_ctx)) for _ in range(2)]
        self._ids_dtype, self._logits_dtype = self._dtype("input_ids"), self._dtype("logits")
        self._ids = self._alloc(self._n_batch * self._ids_dtype.itemsize)
        self._logits = self._alloc(self._n_batch * self.n_vocab * self._logits_dtype.itemsize)
        # a shape input is read by TensorRT from host memory when shapes are inferred and at launch
        self._keep = np.zeros((), self._dtype(LOGITS_TO_KEEP))

    def _alloc(self, nbytes: int) -> int:
        address = self._gpu.alloc(nbytes)
        self._addresses.append(address)
        return address

    @guarded
    def save_state(self) -> BackendState:
        # snapshots live in host memory: a chat keeps a few, and GPU memory is the scarcer of the two
        arrays = {}
        for state in self._states:
            arrays[state.name] = np.empty(state.shape(self._n_past), state.dtype)
            self._gpu.download(arrays[state.name], state.buffers[state.current])
        self._gpu.synchronize()
        return BackendState(self._n_past, sum(a.nbytes for a in arrays.values()), (self, arrays))

    @guarded
    def load_state(self, state: BackendState) -> None:
        owner, arrays = state.data if isinstance(state.data, tuple) else (None, None)
        if owner is not self:
            raise BackendError("this state was not taken by this TensorRT model")
        for tensor in self._states:
            self._gpu.upload(tensor.buffers[tensor.current], arrays[tensor.name])
        self._gpu.synchronize()
        self._n_past = state.n_past

    def close(self) -> None:
        """Release the engine and its GPU memory; waits for a call in progress on another thread. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    def _release(self) -> None:
        # contexts before the engine before the runtime, as TensorRT requires; then the memory
        for attribute in ("_contexts", "_config", "_engine", "_runtime"):
            self.__dict__.pop(attribute, None)
        self._free()

    def _reset_states(self) -> None:
        # a growing state (attention K/V) is empty at 0 tokens; the fixed ones (Mamba2 conv, SSM) start at 0
        for state in self._states:
            if not state.grows:
                self._gpu.zero(state.buffers[state.current], state.nbytes(0))
        self._gpu.synchronize()
        self._n_past = 0

    def _step(self, chunk: list[int], *, keep: int) -> np.ndarray:
        """One engine launch on `chunk` (at most a batch): the logits of its last `keep` tokens."""
        n = len(chunk)
        context = self._contexts[DECODE if n == 1 else PREFILL]
        self._logger.clear()
        ids = np.asarray(chunk, self._ids_dtype)
        self._gpu.upload(self._ids, ids)
        self._bind(context, "input_ids", self._ids, (1, n))
        self._keep[()] = keep
        self._bind(context, LOGITS_TO_KEEP, self._keep.ctypes.data, None)  # a scalar: its value is its shape
        for state in self._states:
            self._bind(context, state.name, state.buffers[state.current], state.shape(self._n_past))
            self._bind(context, state.output, state.buffers[1 - state.current], None)
        self._bind(context, "logits", self._logits, None)
        try:
            unspecified = context.infer_shapes()
            if unspecified:
                raise BackendError(f"TensorRT: inputs not fully specified: {', '.join(unspecified)}")
            # the engine writes into buffers sized by this backend: check its output shapes before launching
            for state in self._states:
                _expect_shape(context, state.output, state.shape(self._n_past + n))
            _expect_shape(context, "logits", (1, keep, self.n_vocab))
            launched = context.execute_async_v3(self._gpu.stream)
        except RuntimeError as exc:  # what TensorRT's Python bindings raise
            raise BackendError(f"TensorRT failed: {self._logger.last_error or exc}") from exc
        if not launched:
            raise BackendError(f"TensorRT failed to run the engine: {self._logger.last_error or 'no reason given'}")
        logits = np.empty((keep, self.n_vocab), self._logits_dtype)
        self._gpu.download(logits, self._logits)
        self._gpu.synchronize()
        for state in self._states:
            state.current = 1 - state.current
        self._n_past += n
        return logits.astype(np.float32, copy=False)

    def _bind(self, context: Any, name: str, address: int, shape: tuple[int, ...] | None) -> None:
        """Give tensor `name` its memory and, for an input, its shape."""
        if shape is not None and not context.set_input_shape(name, shape):
            raise BackendError(f"TensorRT refuses {name} of shape {list(shape)}: outside the engine's profile "
                               f"({self._logger.last_error or 'no reason given'})")
        if not context.set_tensor_address(name, address):
            raise BackendError(f"TensorRT refuses the memory of {name}: {self._logger.last_error}")


def _free_gpu(gpu: CudaDevice, addresses: list[int]) -> None:
    """Free every buffer and the stream, going on past failures (a CUDA error after a fault is sticky)."""
    for release in (gpu.synchronize, *(functools.partial(gpu.free, a) for a in addresses), gpu.close):
        with contextlib.suppress(BackendError):
            release()
    addresses.clear()


def _expect_shape(context: Any, name: str, shape: tuple[int, ...]) -> None:
    got = tuple(context.get_tensor_shape(name))
    if got != shape:
        raise BackendError(f"the engine's {name} would have shape {list(got)}, expected {list(shape)}: "
                           "the engine does not match its manifest")


def _check_machine(built: dict[str, Any]) -> None:
    """Refuse, in one line, to load an engine this machine cannot run."""
    targets = [int(cc.replace(".", "")) for cc in built.get("compute_capabilities", []) if cc[0].isdigit()]
    found = machine.nvidia_gpus()
    if found is None:
        raise BackendError("no NVIDIA driver found (NVML is unavailable): TensorRT engines need an NVIDIA GPU")
    if not found:
        raise BackendError("no NVIDIA GPU found: TensorRT engines run on NVIDIA GPUs only")
    name, capability = found[0]
    if built.get("library") == "tensorrt_rtx" and capability not in tensorrt_lib.RTX_CAPABILITIES:
        raise BackendError(f"TensorRT for RTX engines cannot run on this GPU ({name}, compute capability "
                           f"{capability // 10}.{capability % 10}): TensorRT for RTX targets RTX-class GPUs "
                           f"({', '.join(f'{c // 10}.{c % 10}' for c in tensorrt_lib.RTX_CAPABILITIES)})")
    if targets and capability not in targets:
        built_for = ", ".join(f"{t // 10}.{t % 10}" for t in targets)
        raise BackendError(f"this GPU ({name}, compute capability {capability // 10}.{capability % 10}) is not "
                           f"among the engine's targets ({built_for}): convert again with "
                           f"--compute-capability {capability}")
