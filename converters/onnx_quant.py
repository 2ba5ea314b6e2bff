"""How weights are stored in an ONNX package, per quantization type and flavour.

- fp32: everything float32.
- fp16: matrices and embeddings stored float16 and cast to float32 in the graph (computation stays
  float32, so CPUs without float16 kernels run it; ONNX Runtime folds the casts at load, so the file is
  half the size but memory is not); norms, conv and SSM parameters stay float32.
- int8 / int4: weight-only, blockwise along the input dimension (block size 32 by default), for the
  linear layers; the head in 8 bits, the embedding table in float16 (only the rows looked up are
  cast); norms, conv and SSM parameters stay float32.
  `ort` flavour: ONNX Runtime's MatMulNBits operator, packed by ONNX Runtime's own quantizer.
  `portable` flavour: standard DequantizeLinear (blockwise, opset 21) + MatMul, for TensorRT's parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto

from converters.checkpoint import Checkpoint
from converters.onnx_graph import MS_DOMAIN, Graph
from converters.tensors import as_float16
from localai.errors import ConversionError

QUANTS = ("fp32", "fp16", "int8", "int4")
FLAVORS = ("ort", "portable")
DEFAULT_BLOCK = 32


def check(quant: str, flavor: str, block_size: int) -> tuple[str, str]:
    quant, flavor = quant.lower(), flavor.lower()
    if quant not in QUANTS:
        raise ConversionError(f"unknown ONNX quantization {quant!r}; available: {', '.join(QUANTS)}")
    if flavor not in FLAVORS:
        raise ConversionError(f"unknown ONNX flavour {flavor!r}; available: {', '.join(FLAVORS)}")
    if block_size < 16 or block_size & (block_size - 1):
        raise ConversionError(f"block size must be a power of two of at least 16, got {block_size}")
    return quant, flavor


@dataclass
class WeightFormat:
    """Stores checkpoint tensors in the graph in the chosen format; each is read once and released."""

    quant: str
    flavor: str
    block_size: int = DEFAULT_BLOCK
    _stored: dict[str, str] = field(default_factory=dict)

    def small(self, g: Graph, ckpt: Checkpoint, name: str, shape: tuple[int, ...] | None = None) -> str:
        """A float32 parameter (norm weights, biases, conv, SSM parameters), optionally reshaped."""
        if name not in self._stored:
            array = ckpt.load(name)
            self._stored[name] = g.weight(name, array.reshape(shape) if shape else array)
            ckpt.release(name)
        return self._stored[name]

    def _matrix(self, g: Graph, ckpt: Checkpoint, name: str, *, transpose: bool, half: bool) -> str:
        """A matrix stored float32, or float16 (`half`), once however often it is used."""
        if name not in self._stored:
            array = ckpt.load(name)
            array = array.T if transpose else array
            self._stored[name] = g.weight(name, as_float16(name, array, "fp32") if half else array)
            ckpt.release(name)
        return self._stored[name]

    def _as_float(self, g: Graph, value: str, half: bool) -> str:
        return g.op("Cast", value, to=TensorProto.FLOAT) if half else value

    def embed(self, g: Graph, ckpt: Checkpoint, name: str, ids: str) -> str:
        """Rows of the embedding table [vocab, hidden] for token ids. Every type but fp32 keeps the table in
        float16 and casts only the rows looked up."""
        half = self.quant != "fp32"
        rows = g.op("Gather", self._matrix(g, ckpt, name, transpose=False, half=half), ids, axis=0)
        return self._as_float(g, rows, half)

    def head(self, g: Graph, ckpt: Checkpoint, x: str, name: str) -> str:
        """Logits x @ W^T for the output head W [vocab, hidden] (the embedding table when tied).

        int8 and int4 packages quantize the head to 8 bits (a 4-bit head costs too much accuracy): it is
        the largest matrix read for every generated token."""
        if self.quant in ("int8", "int4"):
            weight = ckpt.load(name)
            try:
                if self.flavor == "ort":
                    return self._matmul_nbits(g, x, f"{name}.head", weight, bits=8)
                return self._dequantize_matmul(g, x, f"{name}.head", weight, bits=8)
            finally:
                ckpt.release(name)
        half = self.quant == "fp16"
        w = self._as_float(g, self._matrix(g, ckpt, name, transpose=False, half=half), half)
        flat = g.op("Reshape", x, g.const([-1, ckpt.shape(name)[1]]))
        logits = g.op("Gemm", flat, w, transB=1)
        shape = g.op("Concat", g.op("Shape", x, start=0, end=2), g.const([ckpt.shape(name)[0]]), axis=0)
        return g.op("Reshape", logits, shape)

    def matmul(self, g: Graph, ckpt: Checkpoint, x: str, name: str) -> str:
        """x @ W^T for a linear layer's weight W [out, in]."""
        if self.quant in ("fp32", "fp16"):
            half = self.quant == "fp16"
            return g.op("MatMul", x, self._as_float(g, self._matrix(g, ckpt, name, transpose=True, half=half), half))
        weight = ckpt.load(name)
        try:
            if self.flavor == "ort":
                return self._matmul_nbits(g, x, name, weight, self.bits)
            return self._dequantize_matmul(g, x, name, weight, self.bits)
        finally:
            ckpt.release(name)

    @property
    def bits(self) -> int:
        return 4 if self.quant == "int4" else 8

    def _matmul_nbits(self, g: Graph, x: str, name: str, weight: np.ndarray, bits: int) -> str:
        """MatMulNBits with ONNX Runtime's own blockwise packing (asymmetric: a zero point per block)."""
        from onnxruntime.capi._pybind_state import quantize_matmul_4bits, quantize_matmul_8bits

        n, k = weight.shape
        blocks, per_byte = -(-k // self.block_size), 8 // bits
        w = np.ascontiguousarray(weight.T)  # [K, N], as a MatMul's B
        packed = np.zeros((n, blocks, self.block_size // per_byte), np.uint8)
        scales = np.zeros((n, blocks), np.float32)
        zero_points = np.zeros((n, -(-blocks // per_byte)), np.uint8)
        pack = quantize_matmul_4bits if bits == 4 else quantize_matmul_8bits
        pack(packed, w, scales, zero_points, self.block_size, n, k, False)
        inputs = [g.weight(f"{name}.q{bits}", packed), g.weight(f"{name}.scales", scales),
                  g.weight(f"{name}.zero_points", zero_points)]
        # accuracy level 4: int8 activations in the dot products, ONNX Runtime's fast CPU path
        return g.op("MatMulNBits", x, *inputs, domain=MS_DOMAIN, K=k, N=n, bits=bits,
                    block_size=self.block_size, accuracy_level=4)

    def _dequantize_matmul(self, g: Graph, x: str, name: str, weight: np.ndarray, bits: int) -> str:
        """Standard DequantizeLinear (symmetric blocks along K, as TensorRT's weight-only path wants) and
        MatMul."""
        n, k = weight.shape
        w = np.ascontiguousarray(weight.T)  # [K, N]
        blocks = -(-k // self.block_size)
        if bits == 4:
            from onnxruntime.capi._pybind_state import quantize_qdq_matmul_4bits

            packed = np.zeros((k * n + 1) // 2, np.uint8)
            scales = np.zeros((blocks, n), np.float32)
            unused_zero_points = np.zeros((n * blocks + 1) // 2, np.uint8)
            quantize_qdq_matmul_4bits(packed, w, scales, unused_zero_points, self.block_size, n, k, True)
            q = g.packed_weight(f"{name}.q4", packed, TensorProto.INT4, (k, n))
        else:  # onnxruntime's QDQ packer is 4-bit only; int8 is symmetric rounding per block
            padded = np.pad(w, ((0, blocks * self.block_size - k), (0, 0)))
            absmax = np.abs(padded.reshape(blocks, self.block_size, n)).max(axis=1)
            scales = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
            values = np.rint(w / np.repeat(scales, self.block_size, axis=0)[:k])
            q = g.weight(f"{name}.q8", np.clip(values, -127, 127).astype(np.int8))
        dequantized = g.op("DequantizeLinear", q, g.weight(f"{name}.scales", scales), axis=0,
                           block_size=self.block_size)
        return g.op("MatMul", x, dequantized)


__all__ = ["DEFAULT_BLOCK", "FLAVORS", "QUANTS", "WeightFormat", "check"]
