"""Qwen3 dense decoders: Llama's layout with NeoX-style RoPE (so no Q/K permutation) and an RMSNorm on
each head's queries and keys."""

from __future__ import annotations

import gguf

from converters import llama
from converters.onnx_layers import Decoder
from converters.tensors import OutputTensor

GGUF_ARCH = gguf.MODEL_ARCH.QWEN3
IGNORED_TENSORS = llama.IGNORED_TENSORS
ModelArgs = llama.ModelArgs
write_hparams = llama.hparams_without_rope_freqs(GGUF_ARCH)


def tensor_plan(args: ModelArgs, present: set[str]) -> list[OutputTensor]:
    return llama.dense_plan(args, present, GGUF_ARCH, permute_qk=False, qk_norm=True)


def build_onnx(args: ModelArgs, d: Decoder, present: set[str]) -> None:
    llama.build_onnx(args, d, present, qk_norm=True)
