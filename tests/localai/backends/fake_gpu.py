"""What a TensorRT engine needs and this machine lacks, stood in for so that the TensorRT backend's own
code (buffers, profiles, shapes, states, snapshots) runs and is checked on the CPU.

- `HostMemory` replaces `CudaDevice`: "GPU memory" is host memory handed out by address, filled with
  0xFF bytes (NaN as floats) so that reading memory nobody wrote shows up in the logits. Reads and
  writes past the end of a block, unknown addresses and double frees fail.
- `FakeEngine` replaces the deserialized engine: it runs the portable ONNX graph the real engine was
  compiled from, with ONNX Runtime, behind TensorRT's execution API as the backend uses it: tensor names,
  modes and types (the real `tensorrt_rtx` enums), one optimization profile per context with the
  manifest's ranges (a shape outside them is refused, as TensorRT does), the shape input read from host
  memory, every other tensor from device memory, output shapes inferred before launch.

test_tensorrt.py checks that every method these classes offer exists on the real classes they imitate.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

SHAPE_INPUT = "logits_to_keep"
ORT_TYPES = {"tensor(float)": "FLOAT", "tensor(float16)": "HALF", "tensor(int64)": "INT64"}


class HostMemory:
    """The CudaDevice interface over host memory."""

    def __init__(self) -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self.stream = 7  # any handle: the fake engine runs synchronously
        self.closed = False

    def alloc(self, nbytes: int) -> int:
        block = np.full(max(int(nbytes), 1), 0xFF, np.uint8)
        self.blocks[block.ctypes.data] = block
        return block.ctypes.data

    def free(self, address: int) -> None:
        del self.blocks[address]  # KeyError: freed twice, or never allocated

    def view(self, address: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        block = self.blocks[address]
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        assert nbytes <= block.nbytes, f"{nbytes} bytes at {address:#x} overrun a block of {block.nbytes}"
        return block[:nbytes].view(dtype).reshape(shape)

    def upload(self, address: int, array: np.ndarray) -> None:
        self.view(address, array.dtype, array.shape)[...] = array

    def download(self, array: np.ndarray, address: int) -> None:
        array[...] = self.view(address, array.dtype, array.shape)

    def zero(self, address: int, nbytes: int) -> None:
        self.view(address, np.dtype(np.uint8), (nbytes,))[...] = 0

    def synchronize(self) -> None:
        assert not self.closed, "the stream was used after close()"

    def close(self) -> None:
        self.closed = True


class FakeEngine:
    """A deserialized engine: the portable ONNX graph at `onnx_path`, with the manifest's `profiles`."""

    def __init__(self, trt: Any, onnx_path: Path, profiles: list[dict[str, Any]], memory: HostMemory) -> None:
        self.trt, self.memory, self.profiles = trt, memory, profiles
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tensors = {t.name: (t, trt.TensorIOMode.INPUT) for t in self.session.get_inputs()}
        self.tensors |= {t.name: (t, trt.TensorIOMode.OUTPUT) for t in self.session.get_outputs()}
        self.num_io_tensors = len(self.tensors)
        self.num_optimization_profiles = len(profiles)
        self.device_memory_size_v2 = 4096  # the scratch memory a context needs
        self.launches: list[tuple[int, int]] = []  # (profile, new tokens) of every launch
        self.configs: list[FakeRuntimeConfig] = []

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_mode(self, name: str) -> Any:
        return self.tensors[name][1]

    def get_tensor_dtype(self, name: str) -> Any:
        return getattr(self.trt.DataType, ORT_TYPES[self.tensors[name][0].type])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else -1 for d in self.tensors[name][0].shape)

    def is_shape_inference_io(self, name: str) -> bool:
        return name == SHAPE_INPUT

    def create_runtime_config(self) -> FakeRuntimeConfig:
        self.configs.append(FakeRuntimeConfig())
        return self.configs[-1]

    def create_execution_context(self, runtime_config: FakeRuntimeConfig) -> FakeContext:
        return FakeContext(self, runtime_config)


class FakeRuntimeConfig:
    """How contexts are created: who allocates their scratch memory, whether kernels are specialised."""

    def __init__(self) -> None:
        self.allocation: Any = None
        self.dynamic_shapes_kernel_specialization_strategy: Any = None

    def set_execution_context_allocation_strategy(self, strategy: Any) -> None:
        self.allocation = strategy


class FakeContext:
    """An execution context: shapes and addresses set by name, then one launch."""

    def __init__(self, engine: FakeEngine, config: FakeRuntimeConfig) -> None:
        self.engine, self.config = engine, config
        self.scratch: tuple[int, int] | None = None
        self.profile: int | None = None
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_optimization_profile_async(self, profile: int, stream: int) -> bool:
        if not 0 <= profile < self.engine.num_optimization_profiles:
            return False
        self.profile = profile
        return True

    def set_device_memory(self, memory: int, size: int) -> None:
        self.scratch = (int(memory), int(size))

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        tensor, mode = self.engine.tensors[name]
        if mode != self.engine.trt.TensorIOMode.INPUT or len(shape) != len(tensor.shape):
            return False
        low, _, high = self._ranges(name)
        if not all(lo <= s <= hi for s, lo, hi in zip(shape, low, high, strict=True)):
            return False
        self.shapes[name] = tuple(int(s) for s in shape)
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name not in self.engine.tensors:
            return False
        self.addresses[name] = int(address)
        return True

    def infer_shapes(self) -> list[str]:
        inputs = [n for n, (_, mode) in self.engine.tensors.items() if mode == self.engine.trt.TensorIOMode.INPUT]
        missing = [n for n in inputs if n not in self.addresses or (n != SHAPE_INPUT and n not in self.shapes)]
        if missing:
            return missing
        assert self.addresses[SHAPE_INPUT] not in self.engine.memory.blocks, "a shape input must be in host memory"
        keep = int(ctypes.c_int64.from_address(self.addresses[SHAPE_INPUT]).value)
        low, _, high = self._ranges(SHAPE_INPUT)
        if not low[0] <= keep <= high[0]:
            raise RuntimeError(f"{SHAPE_INPUT}={keep} is outside the profile's range {low[0]}..{high[0]}")
        self.keep = keep
        return []

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        """Inputs: as set. Outputs: from the graph's symbolic dimensions, as TensorRT infers them."""
        if name in self.shapes:
            return self.shapes[name]
        past = next(s[2] for n, s in self.shapes.items() if n.endswith(".key")) if any(
            n.endswith(".key") for n in self.shapes) else 0
        new = self.shapes["input_ids"][1]
        sizes = {"batch": 1, "past_sequence": past + new, "kept": self.keep}
        return tuple(d if isinstance(d, int) else sizes[d] for d in self.engine.tensors[name][0].shape)

    def execute_async_v3(self, stream_handle: int) -> bool:
        assert stream_handle == self.engine.memory.stream
        assert not self.infer_shapes(), "launched with inputs not fully specified"
        memory, feeds = self.engine.memory, {SHAPE_INPUT: np.asarray(self.keep, np.int64)}
        if self.config.allocation == self.engine.trt.ExecutionContextAllocationStrategy.USER_MANAGED:
            assert self.scratch is not None, "a user-managed context launched without its scratch memory"
            memory.view(self.scratch[0], np.dtype(np.uint8), (self.engine.device_memory_size_v2,))  # big enough
            assert self.scratch[1] >= self.engine.device_memory_size_v2
        for name, shape in self.shapes.items():
            feeds[name] = memory.view(self.addresses[name], self._dtype(name), shape).copy()
        outputs = [o.name for o in self.engine.session.get_outputs()]
        written = {self.addresses[n] for n in outputs}
        assert not written & {self.addresses[n] for n in feeds if n != SHAPE_INPUT}, "an output overwrites an input"
        for name, value in zip(outputs, self.engine.session.run(outputs, feeds), strict=True):
            assert value.shape == self.get_tensor_shape(name), name
            memory.upload(self.addresses[name], value)
        self.engine.launches.append((self.profile, self.shapes["input_ids"][1]))
        return True

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self.engine.trt.nptype(self.engine.get_tensor_dtype(name)))

    def _ranges(self, name: str) -> list[list[int]]:
        assert self.profile is not None, "no optimization profile set"
        return self.engine.profiles[self.profile]["shapes"][name]
