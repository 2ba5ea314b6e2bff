"""Qwen2 dense decoders: Llama's layout with NeoX-style RoPE and biases on the Q, K and V projections."""

from __future__ import annotations

import gguf

from converters import llama
from converters.onnx_layers import Decoder
from converters.tensors import OutputTensor

GGUF_ARCH = gguf.MODEL_ARCH.QWEN2
IGNORED_TENSORS = llama.IGNORED_TENSORS
ModelArgs = llama.ModelArgs
write_hparams = llama.hparams_without_rope_freqs(GGUF_ARCH)


def tensor_plan(args: ModelArgs, present: set[str]) -> list[OutputTensor]:
    return llama.dense_plan(args, present, GGUF_ARCH, permute_qk=False, qkv_bias=True)


def build_onnx(args: ModelArgs, d: Decoder, present: set[str]) -> None:
    llama.build_onnx(args, d, present, qkv_bias=True)
