"""How weights are stored in an ONNX package, per quantization type and flavour.

- fp32: everything float32.
- fp16: matrices and embeddings stored float16; norms, conv and SSM parameters stay float32.
  `ort` flavour: the matrices are cast to float32 in the graph (computation stays float32, so CPUs
  without float16 kernels run it fast; ONNX Runtime folds the casts at load, so the file is half the
  size but memory is not).
  `portable` flavour: matrix products run in float16 (activations cast to float16 and back around each
  MatMul/Gemm): TensorRT compiles a strongly typed network in the graph's own types, and a cast weight
  would be folded into a float32 constant, doubling the engine.
- int8 / int4: weight-only, blockwise along the input dimension (block size 32 by default), for the
  linear layers; the head in 8 bits, the embedding table in float16 (only the rows looked up are
  cast); norms, conv and SSM parameters stay float32.
  `ort` flavour: ONNX Runtime's MatMulNBits operator, packed by ONNX Runtime's own quantizer.
  `portable` flavour: standard DequantizeLinear (blockwise, opset 21) + MatMul, for TensorRT's parser.

Two more types exist in the portable flavour only, for GPU runtimes (TensorRT engines are built from
them; ONNX Runtime's CPU provider has no bfloat16 matrix product, and fp8 wants compute capability 8.9+):
- bf16: like the portable fp16, in bfloat16 (the checkpoint's own range: no float16 overflow check).
- fp8: weight-only float8 e4m3 with a float16 scale per output channel (DequantizeLinear), products in
  float16; the embedding table in float16, the head in fp8 like the other matrices.
- nvfp4: weight-only float4 e2m1 in blocks of 16 along the input dimension, each block's scale a float8
  e4m3 value times one float32 scale per matrix (two DequantizeLinear, opset 23), products in float16;
  the embedding table in float16, the head in fp8 (a 4-bit head costs too much accuracy, as for int4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
from onnx import TensorProto, numpy_helper

from converters.checkpoint import Checkpoint
from converters.onnx_graph import MS_DOMAIN, OPSET, OPSET_23, Graph
from converters.tensors import as_float16
from localai.errors import ConversionError

QUANTS = ("fp32", "fp16", "int8", "int4")
ENGINE_QUANTS = ("bf16", "fp8", "nvfp4")  # portable flavour only: graphs for GPU runtimes
FP8_MAX, FP4_MAX = 448.0, 6.0  # largest float8 e4m3 (fn) and float4 e2m1 values
NVFP4_BLOCK = 16
# the type of the matrix products of the portable float types
PRODUCT_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16, "fp8": TensorProto.FLOAT16,
                 "nvfp4": TensorProto.FLOAT16}
FLAVORS = ("ort", "portable")
DEFAULT_BLOCK = 32


def check(quant: str, flavor: str, block_size: int) -> tuple[str, str]:
    quant, flavor = quant.lower(), flavor.lower()
    if quant not in QUANTS + ENGINE_QUANTS:
        raise ConversionError(f"unknown ONNX quantization {quant!r}; available: {', '.join(QUANTS + ENGINE_QUANTS)}")
    if flavor not in FLAVORS:
        raise ConversionError(f"unknown ONNX flavour {flavor!r}; available: {', '.join(FLAVORS)}")
    if quant in ENGINE_QUANTS and flavor != "portable":
        raise ConversionError(f"{quant} ONNX graphs exist in the portable flavour only (--flavor portable), for GPU "
                              "runtimes: TensorRT, or ONNX Runtime on CUDA")
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

    def small(self, g: Graph, ckpt: Checkpoint, name: str, shape: tuple[int, ...] | None = None, *,
              repeat: int = 1) -> str:
        """A float32 parameter (norm weights, biases, conv, SSM parameters), optionally reshaped, or each
        value `repeat` times in a row (a value per head as one per channel)."""
        if name not in self._stored:
            array = np.repeat(ckpt.load(name), repeat) if repeat > 1 else ckpt.load(name)
            self._stored[name] = g.weight(name, array.reshape(shape) if shape else array)
            ckpt.release(name)
        return self._stored[name]

    def _matrix(self, g: Graph, ckpt: Checkpoint, name: str, *, transpose: bool, store: str) -> str:
        """A matrix stored as `store` (fp32, fp16 or bf16), once however often it is used."""
        if name not in self._stored:
            array = ckpt.load(name)
            array = array.T if transpose else array
            if store == "fp16":
                array = as_float16(name, array, "fp32")
            elif store == "bf16":
                array = np.ascontiguousarray(array, dtype=ml_dtypes.bfloat16)
            self._stored[name] = g.weight(name, array)
            ckpt.release(name)
        return self._stored[name]

    def _as_float(self, g: Graph, value: str, store: str) -> str:
        return g.op("Cast", value, to=TensorProto.FLOAT) if store != "fp32" else value

    @property
    def _float_store(self) -> str:
        """How fp32/fp16/bf16 packages store their matrices."""
        return self.quant if self.quant in ("fp16", "bf16") else "fp32"

    def embed(self, g: Graph, ckpt: Checkpoint, name: str, ids: str) -> str:
        """Rows of the embedding table [vocab, hidden] for token ids. Every type but fp32 keeps the table in
        float16 (bf16: bfloat16) and casts only the rows looked up."""
        store = {"fp32": "fp32", "bf16": "bf16"}.get(self.quant, "fp16")
        rows = g.op("Gather", self._matrix(g, ckpt, name, transpose=False, store=store), ids, axis=0)
        return self._as_float(g, rows, store)

    def _product(self, g: Graph, op: str, x: str, w: str, **attrs: int) -> str:
        """`op` (MatMul, Gemm) of float32 activations `x` and a stored matrix `w`, as float32. The portable
        float types compute it in PRODUCT_TYPES (x cast there, the result back); the others cast `w` to
        float32."""
        if self.flavor != "portable" or self.quant not in PRODUCT_TYPES:
            return g.op(op, x, self._as_float(g, w, self._float_store), **attrs)
        narrow = g.op("Cast", x, to=PRODUCT_TYPES[self.quant])
        return g.op("Cast", g.op(op, narrow, w, **attrs), to=TensorProto.FLOAT)

    def head(self, g: Graph, ckpt: Checkpoint, x: str, name: str) -> str:
        """Logits x @ W^T for the output head W [vocab, hidden] (the embedding table when tied).

        int8 and int4 packages quantize the head to 8 bits (a 4-bit head costs too much accuracy): it is
        the largest matrix read for every generated token."""
        if self.quant in ("int8", "int4", "fp8", "nvfp4"):
            weight = ckpt.load(name)
            try:
                if self.quant in ("fp8", "nvfp4"):
                    return self._fp8_matmul(g, x, f"{name}.head", weight)
                if self.flavor == "ort":
                    return self._matmul_nbits(g, x, f"{name}.head", weight, bits=8)
                return self._dequantize_matmul(g, x, f"{name}.head", weight, bits=8)
            finally:
                ckpt.release(name)
        w = self._matrix(g, ckpt, name, transpose=False, store=self._float_store)
        flat = g.op("Reshape", x, g.const([-1, ckpt.shape(name)[1]]))
        logits = self._product(g, "Gemm", flat, w, transB=1)
        shape = g.op("Concat", g.op("Shape", x, start=0, end=2), g.const([ckpt.shape(name)[0]]), axis=0)
        return g.op("Reshape", logits, shape)

    def matmul(self, g: Graph, ckpt: Checkpoint, x: str, name: str) -> str:
        """x @ W^T for a linear layer's weight W [out, in]."""
        if self.quant in ("fp32", "fp16", "bf16"):
            w = self._matrix(g, ckpt, name, transpose=True, store=self._float_store)
            return self._product(g, "MatMul", x, w)
        weight = ckpt.load(name)
        try:
            if self.quant == "fp8":
                return self._fp8_matmul(g, x, name, weight)
            if self.quant == "nvfp4":
                return self._nvfp4_matmul(g, x, name, weight)
            if self.flavor == "ort":
                return self._matmul_nbits(g, x, name, weight, self.bits)
            return self._dequantize_matmul(g, x, name, weight, self.bits)
        finally:
            ckpt.release(name)

    def _fp8_matmul(self, g: Graph, x: str, name: str, weight: np.ndarray) -> str:
        """float8 e4m3 weights [K, N] with a float16 scale per output channel, dequantized to float16 for a
        float16 product (TensorRT's fp8 weight-only pattern)."""
        w = np.ascontiguousarray(weight.T, dtype=np.float32)  # [K, N]
        absmax = np.abs(w).max(axis=0)
        scales = np.where(absmax > 0, absmax / FP8_MAX, 1.0).astype(np.float16)
        q = np.clip(w / scales.astype(np.float32), -FP8_MAX, FP8_MAX).astype(ml_dtypes.float8_e4m3fn)
        dequantized = g.op("DequantizeLinear", g.weight(f"{name}.fp8", q), g.weight(f"{name}.scales", scales),
                           axis=1)
        return self._product(g, "MatMul", x, dequantized)

    def _nvfp4_matmul(self, g: Graph, x: str, name: str, weight: np.ndarray) -> str:
        """float4 e2m1 weights [K, N] in blocks of 16 along K; a block's scale is float8 e4m3 times one float32
        scale of the matrix (NVIDIA's NVFP4); dequantized to float16 for a float16 product."""
        n, k = weight.shape
        if k % NVFP4_BLOCK:
            raise ConversionError(f"nvfp4 needs input dimensions divisible by {NVFP4_BLOCK}; {name} has {k}")
        w = np.ascontiguousarray(weight.T, dtype=np.float32)  # [K, N]
        absmax = np.abs(w.reshape(k // NVFP4_BLOCK, NVFP4_BLOCK, n)).max(axis=1)  # [K / 16, N]
        matrix_scale = np.float32(absmax.max() / (FP4_MAX * FP8_MAX) if absmax.max() > 0 else 1.0)
        block_scales = (absmax / FP4_MAX / matrix_scale).astype(ml_dtypes.float8_e4m3fn)
        effective = np.repeat(block_scales.astype(np.float32) * matrix_scale, NVFP4_BLOCK, axis=0)
        values = np.divide(w, effective, out=np.zeros_like(w), where=effective > 0)
        q = np.clip(values, -FP4_MAX, FP4_MAX).astype(ml_dtypes.float4_e2m1fn)
        packed = np.frombuffer(numpy_helper.from_array(q).raw_data, np.uint8)  # two values a byte, as ONNX wants
        scales = g.op("DequantizeLinear", g.weight(f"{name}.block_scales", block_scales),
                      g.weight(f"{name}.scale", np.asarray(matrix_scale)))
        dequantized = g.op("DequantizeLinear", g.packed_weight(f"{name}.fp4", packed, TensorProto.FLOAT4E2M1, (k, n)),
                           g.op("Cast", scales, to=TensorProto.FLOAT16), axis=0, block_size=NVFP4_BLOCK)
        return self._product(g, "MatMul", x, dequantized)

    @property
    def opset(self) -> int:
        """The graph's ONNX opset: float4 weights and the ort flavour's RMSNormalization need 23."""
        return OPSET_23 if self.quant == "nvfp4" or self.flavor == "ort" else OPSET

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


__all__ = ["DEFAULT_BLOCK", "ENGINE_QUANTS", "FLAVORS", "QUANTS", "WeightFormat", "check"]
