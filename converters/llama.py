"""Llama-family dense decoders (`llama`, `mistral`), and the layout helpers `qwen3` reuses.

llama.cpp's `llama` architecture applies rotary embeddings to interleaved pairs, while transformers
rotates the two halves of each head ("rotate_half"); the Q and K rows are permuted here so both compute
the same thing. Llama 3's frequency-dependent RoPE scaling becomes a `rope_freqs` tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np

from converters.hparams import flag, hparam, layer_count, positive, rope_settings
from converters.onnx_layers import Decoder
from converters.tensors import NameMap, OutputTensor, direct, transformed
from localai.errors import ConversionError

GGUF_ARCH = gguf.MODEL_ARCH.LLAMA
IGNORED_TENSORS = (".rotary_emb.inv_freq",)
SUPPORTED_ROPE = ("default", "linear", "llama3")


@dataclass(frozen=True)
class ModelArgs:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any]
    tie_word_embeddings: bool
    context_length: int
    attention_bias: bool
    mlp_bias: bool

    @property
    def rope_type(self) -> str:
        return str(self.rope_scaling.get("rope_type") or self.rope_scaling.get("type") or "default")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelArgs:
        hidden = positive("hidden_size", hparam(config, "hidden_size"))
        heads = positive("num_attention_heads", hparam(config, "num_attention_heads"))
        theta, scaling = rope_settings(config)
        window, context = config.get("sliding_window"), hparam(config, "max_position_embeddings", default=4096)
        if config.get("use_sliding_window") or (
                window and config.get("use_sliding_window") is not False and window < context):
            raise ConversionError(
                f"config.json: sliding-window attention (window {window}) is not supported: llama.cpp would "
                "attend to the whole context and give other results past the window"
            )
        if config.get("hidden_act", "silu") != "silu":
            raise ConversionError(f"config.json: hidden_act={config['hidden_act']!r} is not supported (needs silu)")
        args = cls(
            vocab_size=positive("vocab_size", hparam(config, "vocab_size")),
            hidden_size=hidden,
            num_hidden_layers=layer_count(hparam(config, "num_hidden_layers")),
            num_attention_heads=heads,
            num_key_value_heads=positive("num_key_value_heads",
                                         hparam(config, "num_key_value_heads", default=heads)),
            head_dim=positive("head_dim", hparam(config, "head_dim", default=hidden // heads)),
            intermediate_size=positive("intermediate_size", hparam(config, "intermediate_size")),
            norm_eps=positive("rms_norm_eps", hparam(config, "rms_norm_eps", cast=float, default=1e-6)),
            rope_theta=theta,
            rope_scaling=scaling,
            tie_word_embeddings=hparam(config, "tie_word_embeddings", cast=flag, default=False),
            context_length=positive("max_position_embeddings", context),
            attention_bias=hparam(config, "attention_bias", cast=flag, default=False),
            mlp_bias=hparam(config, "mlp_bias", cast=flag, default=False),
        )
        if args.rope_type not in SUPPORTED_ROPE:
            raise ConversionError(
                f"RoPE scaling {args.rope_type!r} is not supported (supported: {', '.join(SUPPORTED_ROPE)})"
            )
        if heads % args.num_key_value_heads:
            raise ConversionError("config.json: num_attention_heads must be a multiple of num_key_value_heads")
        return args


def write_hparams(args: ModelArgs, writer: gguf.GGUFWriter) -> None:
    """The hyper-parameters every llama-style dense decoder shares."""
    writer.add_context_length(args.context_length)
    writer.add_embedding_length(args.hidden_size)
    writer.add_block_count(args.num_hidden_layers)
    writer.add_vocab_size(args.vocab_size)
    writer.add_feed_forward_length(args.intermediate_size)
    writer.add_head_count(args.num_attention_heads)
    writer.add_head_count_kv(args.num_key_value_heads)
    writer.add_key_length(args.head_dim)
    writer.add_value_length(args.head_dim)
    writer.add_rope_dimension_count(args.head_dim)
    writer.add_rope_freq_base(args.rope_theta)
    writer.add_layer_norm_rms_eps(args.norm_eps)
    if args.rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(args.rope_scaling["factor"]))


def hparams_without_rope_freqs(arch: gguf.MODEL_ARCH) -> Callable[[ModelArgs, gguf.GGUFWriter], None]:
    """`write_hparams` for a Llama-layout architecture whose llama.cpp graph reads no `rope_freqs`, and so
    cannot take Llama 3's RoPE scaling (ONNX can)."""

    def write(args: ModelArgs, writer: gguf.GGUFWriter) -> None:
        if args.rope_type == "llama3":
            raise ConversionError(f"RoPE scaling 'llama3' is not supported for {arch.name.lower()} in GGUF")
        write_hparams(args, writer)

    return write


def tensor_plan(args: ModelArgs, present: set[str]) -> list[OutputTensor]:
    plan = dense_plan(args, present, GGUF_ARCH, permute_qk=True)
    if args.rope_type == "llama3":
        factors = llama3_rope_factors(args)
        plan.append(OutputTensor("rope_freqs.weight", {}, lambda load: factors))
    return plan


def dense_plan(
    args: ModelArgs, present: set[str], arch: gguf.MODEL_ARCH, *, permute_qk: bool, qk_norm: bool = False,
    qkv_bias: bool = False,
) -> list[OutputTensor]:
    """Embeddings, pre-norm attention + SwiGLU blocks, final norm and head, as transformers names them."""
    gguf_name = NameMap(arch, args.num_hidden_layers)
    h, v, hd = args.hidden_size, args.vocab_size, args.head_dim
    q, kv = args.num_attention_heads * hd, args.num_key_value_heads * hd
    plan = [direct("token_embd.weight", "model.embed_tokens.weight", (v, h))]

    def add(name: str, shape: tuple[int, ...], heads: int | None = None) -> None:
        if permute_qk and heads is not None:
            plan.append(transformed(gguf_name(name), name, shape, lambda w: _rotary_permute(w, heads)))
        else:
            plan.append(direct(gguf_name(name), name, shape))

    for i in range(args.num_hidden_layers):
        layer = f"model.layers.{i}"
        add(f"{layer}.input_layernorm.weight", (h,))
        for proj, rows, heads in (("q_proj", q, args.num_attention_heads), ("k_proj", kv, args.num_key_value_heads),
                                  ("v_proj", kv, None)):
            add(f"{layer}.self_attn.{proj}.weight", (rows, h), heads)
            if args.attention_bias or qkv_bias:
                add(f"{layer}.self_attn.{proj}.bias", (rows,), heads)
        add(f"{layer}.self_attn.o_proj.weight", (h, q))
        if args.attention_bias:
            add(f"{layer}.self_attn.o_proj.bias", (h,))
        if qk_norm:
            add(f"{layer}.self_attn.q_norm.weight", (hd,))
            add(f"{layer}.self_attn.k_norm.weight", (hd,))
        add(f"{layer}.post_attention_layernorm.weight", (h,))
        ff = args.intermediate_size
        for proj, shape in (("gate_proj", (ff, h)), ("up_proj", (ff, h)), ("down_proj", (h, ff))):
            add(f"{layer}.mlp.{proj}.weight", shape)
            if args.mlp_bias:
                add(f"{layer}.mlp.{proj}.bias", shape[:1])
    plan.append(direct("output_norm.weight", "model.norm.weight", (h,)))
    if not args.tie_word_embeddings or "lm_head.weight" in present:
        plan.append(direct("output.weight", "lm_head.weight", (v, h)))
    return plan


def _rotary_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder each head's rows from transformers' half-split RoPE layout to llama.cpp's interleaved one."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(args: ModelArgs) -> np.ndarray:
    """Per-frequency divisors of Llama 3's RoPE scaling, as llama.cpp reads them from `rope_freqs`."""
    s = args.rope_scaling
    factor = float(s.get("factor", 8.0))
    low, high = float(s.get("low_freq_factor", 1.0)), float(s.get("high_freq_factor", 4.0))
    old_ctx = float(s.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (args.rope_theta ** (np.arange(0, args.head_dim, 2, dtype=np.float64) / args.head_dim))
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            factors.append(1.0)
        elif wavelen > old_ctx / low:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def inv_freq(args: ModelArgs) -> np.ndarray:
    """Rotary frequencies as transformers computes them, with linear or Llama 3 scaling applied."""
    exponents = np.arange(0, args.head_dim, 2, dtype=np.int64).astype(np.float32) / args.head_dim
    freqs = (1.0 / (np.float32(args.rope_theta) ** exponents)).astype(np.float32)
    if args.rope_type == "linear":
        return freqs / np.float32(args.rope_scaling["factor"])
    if args.rope_type == "llama3":
        return freqs / llama3_rope_factors(args)
    return freqs


def build_onnx(args: ModelArgs, d: Decoder, present: set[str], *, qk_norm: bool = False,
               qkv_bias: bool = False) -> None:
    """The decoder graph of a dense Llama-style model (Qwen3 adds `qk_norm`, Qwen2 `qkv_bias`)."""
    x, h = d.embed("model.embed_tokens.weight"), None
    freqs = inv_freq(args)
    for i in range(args.num_hidden_layers):
        layer = f"model.layers.{i}"
        x, h = d.residual_norm(x, h, f"{layer}.input_layernorm.weight", args.norm_eps)  # h: the last MLP's
        h = d.attention(h, i, f"{layer}.self_attn", heads=args.num_attention_heads,
                        kv_heads=args.num_key_value_heads, head_dim=args.head_dim,
                        bias=args.attention_bias or qkv_bias, out_bias=args.attention_bias,
                        qk_norm_eps=args.norm_eps if qk_norm else None, inv_freq=freqs)
        x, h = d.residual_norm(x, h, f"{layer}.post_attention_layernorm.weight", args.norm_eps)
        h = d.swiglu_mlp(h, f"{layer}.mlp", args.mlp_bias)
    head = "lm_head.weight" if "lm_head.weight" in present else "model.embed_tokens.weight"
    d.head(d.g.op("Add", x, h), "model.norm.weight", args.norm_eps, head, args.vocab_size)
