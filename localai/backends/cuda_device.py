"""GPU memory and one CUDA stream through cuda-bindings (`cuda.bindings.runtime`, no torch): what the
TensorRT backend needs to keep state tensors on the GPU between steps.

This is the backend's GPU seam: nothing else in localai allocates GPU memory or moves bytes to and from
it, and the CPU tests replace this class with one backed by host memory. On a machine without an NVIDIA
driver, opening it fails with one line (CUDA's own error name and text).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from localai.errors import BackendError

INSTALL_HINT = "pip install 'localai[tensorrt]'"


def _runtime() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError:
        raise BackendError(f"cuda-bindings is not installed: {INSTALL_HINT}") from None
    return runtime


class CudaDevice:
    """Device 0 and a stream of its own. Copies are queued on the stream: host arrays handed to `upload`
    and `download` must not be touched until `synchronize()`, which this class makes hard to get wrong
    by keeping them referenced until then."""

    def __init__(self) -> None:
        self._cudart = _runtime()
        count = self._call("cudaGetDeviceCount")
        if count == 0:
            raise BackendError("CUDA sees no GPU on this machine")
        self._call("cudaSetDevice", 0)
        self._stream_object = self._call("cudaStreamCreate")
        self.stream = int(self._stream_object)  # what TensorRT's execute_async_v3 takes
        self._in_flight: list[np.ndarray] = []

    def _call(self, function: str, *args: Any) -> Any:
        error, *result = getattr(self._cudart, function)(*args)
        if error != self._cudart.cudaError_t.cudaSuccess:
            _, name = self._cudart.cudaGetErrorName(error)
            _, text = self._cudart.cudaGetErrorString(error)
            raise BackendError(f"CUDA {function} failed: {name.decode()} ({text.decode()})")
        return result[0] if len(result) == 1 else None

    def alloc(self, nbytes: int) -> int:
        """The address of `nbytes` of new GPU memory (at least one byte: zero-size tensors need an address)."""
        return int(self._call("cudaMalloc", max(int(nbytes), 1)))

    def free(self, address: int) -> None:
        self._call("cudaFree", address)

    def upload(self, address: int, array: np.ndarray) -> None:
        """Queue a copy of `array` (C-contiguous) to GPU memory at `address`."""
        array = np.ascontiguousarray(array)
        self._in_flight.append(array)
        self._call("cudaMemcpyAsync", address, array.ctypes.data, array.nbytes,
                   self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream_object)

    def download(self, array: np.ndarray, address: int) -> None:
        """Queue a copy of GPU memory at `address` into `array` (C-contiguous, filled after `synchronize`)."""
        if not array.flags.c_contiguous:
            raise ValueError("download needs a C-contiguous array")
        self._in_flight.append(array)
        self._call("cudaMemcpyAsync", array.ctypes.data, address, array.nbytes,
                   self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream_object)

    def zero(self, address: int, nbytes: int) -> None:
        """Queue setting `nbytes` at `address` to zero."""
        self._call("cudaMemsetAsync", address, 0, nbytes, self._stream_object)

    def synchronize(self) -> None:
        """Wait for everything queued on the stream."""
        self._call("cudaStreamSynchronize", self._stream_object)
        self._in_flight.clear()

    def close(self) -> None:
        self.synchronize()
        self._call("cudaStreamDestroy", self._stream_object)
