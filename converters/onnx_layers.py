"""The building blocks of decoder graphs: embeddings, RMSNorm, linear layers, attention with a KV state,
Mamba2 with conv and SSM states, MLPs and the head. Architecture modules assemble them in `build_onnx`.

One graph serves prefill and decode. Its inputs are `input_ids` [batch, sequence], `logits_to_keep`
(how many of the last positions get logits) and one `past.<layer>.<kind>` tensor per state; it returns
`logits` and the matching `present.<layer>.<kind>` tensors, which the runtime feeds back as the next
call's past. An empty past (length 0) starts a sequence.

The `portable` flavour (what TensorRT builds from) uses standard ONNX operators only, in the patterns
ONNX Runtime's optimizer fuses (RMSNorm, SiLU). The `ort` flavour also uses ONNX Runtime's own
`com.microsoft` operators where they save work: attention is one `GroupQueryAttention` whose key/value
states are buffers of the context's full length (`KV_CAPACITY`), shared between past and present, so
a decode step writes one position instead of copying the cache; the number of tokens already in them
is the `past_length` input. Quantized matrices differ too (see onnx_quant.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from converters import onnx_quant
from converters.checkpoint import Checkpoint
from converters.onnx_graph import MS_DOMAIN, Graph
from localai.backends.graph import KV_CAPACITY
from localai.errors import ConversionError

INT64_MAX = np.iinfo(np.int64).max
BATCH, SEQUENCE, PAST = "batch", "sequence", "past_sequence"


F = TypeVar("F", bound=Callable[..., Any])


def scoped(kind: str) -> Callable[[F], F]:
    """Name the nodes a Decoder method makes after the part of the model it builds (see Graph.scope)."""
    def wrap(method: F) -> F:
        @functools.wraps(method)
        def call(self: Decoder, *args: Any, **kwargs: Any) -> Any:
            with self.g.scope(kind):
                return method(self, *args, **kwargs)
        return call  # type: ignore[return-value]
    return wrap


@dataclass
class Decoder:
    """Builds one decoder graph from checkpoint tensors, loaded (and released) one at a time."""

    g: Graph
    ckpt: Checkpoint
    weights: onnx_quant.WeightFormat
    _past_length: str | None = None
    _dt_floor: dict[float, str] = field(default_factory=dict)
    _rope: dict[tuple[float, ...], tuple[str, str]] = field(default_factory=dict)

    # -- inputs, states, outputs ---------------------------------------------------------------------------

    def embed(self, table: str) -> str:
        """Token embeddings of the `input_ids` input."""
        ids = self.g.input("input_ids", "int64", (BATCH, SEQUENCE))
        self.g.input("logits_to_keep", "int64", ())
        return self.weights.embed(self.g, self.ckpt, table, ids)

    def state(self, layer: int, kind: str, shape: tuple[int | str, ...], *, in_place: bool = False) -> str:
        """Declare the state `kind` of `layer`: its past input now, its present output via `present()`.
        `in_place`: the operator producing the present reads each value of the past before writing its
        place, so the runtime may bind one buffer as both (see onnx_runtime.SharedBuffer)."""
        return self.g.input(f"past.{layer}.{kind}", "float32", shape, in_place=in_place)

    def present(self, value: str, layer: int, kind: str, shape: tuple[int | str, ...]) -> None:
        self.g.output(value, f"present.{layer}.{kind}", "float32", shape)

    @scoped("head")
    def head(self, x: str, norm: str, eps: float, lm_head: str, vocab_size: int) -> None:
        """Final norm, the last `logits_to_keep` positions, and their logits."""
        g = self.g
        keep = g.op("Neg", g.op("Unsqueeze", "logits_to_keep", g.const([0])))
        x = self.rms_norm(g.op("Slice", x, keep, g.const([INT64_MAX]), g.const([1])), norm, eps)
        logits = self.weights.head(g, self.ckpt, x, lm_head)
        g.output(logits, "logits", "float32", (BATCH, "kept", vocab_size))

    # -- shared pieces ----------------------------------------------------------------------------------------

    def dim(self, x: str, axis: int) -> str:
        """Size of `x` along `axis` as a 1-element int64 tensor."""
        if axis == -1:
            return self.g.op("Shape", x, start=-1)
        return self.g.op("Shape", x, start=axis, end=axis + 1)

    @property
    def fused(self) -> bool:
        """Whether ONNX Runtime's fused operators are used (the ort flavour)."""
        return self.weights.flavor == "ort"

    def past_length(self, past_key: str) -> str:
        """Tokens already in the state (1-element int64): the `past_length` input where K/V states are
        shared buffers, else the first KV state's length."""
        if self._past_length is None:
            if self.fused:
                scalar = self.g.input("past_length", "int64", ())
                self._past_length = self.g.op("Unsqueeze", scalar, self.g.const([0]))
            else:
                self._past_length = self.g.op("Shape", past_key, start=2, end=3)
        return self._past_length

    def dt_floor(self, x: str, time_step_min: float) -> str:
        """The least Mamba2 step size: `time_step_min` for a prompt, 0 (no clamp: softplus is never
        negative) for one new token, as transformers does; from `x` [batch, sequence, ...], computed once per value."""
        if time_step_min not in self._dt_floor:
            g = self.g
            one_token = g.op("Equal", g.op("Squeeze", self.dim(x, 1)), g.const(1))
            self._dt_floor[time_step_min] = g.op("Where", one_token, g.const(0.0, np.float32),
                                                 g.const(time_step_min, np.float32))
        return self._dt_floor[time_step_min]

    def rms_norm(self, x: str, weight: str, eps: float, *, weight_shape: tuple[int, ...] | None = None) -> str:
        g = self.g
        w = self.weights.small(g, self.ckpt, weight, weight_shape)
        if self.fused:
            return g.op("RMSNormalization", x, w, axis=-1, epsilon=eps)
        return g.op("Mul", self._normalize(x, eps, None), w)

    def residual_norm(self, x: str, h: str | None, weight: str, eps: float) -> tuple[str, str]:
        """The residual stream x + h (x itself where `h` is None, before the first block) and its RMSNorm.
        The ort flavour adds and normalises in one SkipSimplifiedLayerNormalization (com.microsoft)."""
        if h is None:
            return x, self.rms_norm(x, weight, eps)
        if not self.fused:
            x = self.g.op("Add", x, h)
            return x, self.rms_norm(x, weight, eps)
        w = self.weights.small(self.g, self.ckpt, weight)
        normed, _, _, total = self.g.op("SkipSimplifiedLayerNormalization", x, h, w, outputs=4, domain=MS_DOMAIN,
                                        epsilon=eps)
        return total, normed

    def _normalize(self, x: str, eps: float, size: int | None) -> str:
        """x / sqrt(mean(x^2) + eps) over the last axis (of `size`, where the fused form needs it)."""
        g = self.g
        if self.fused and size is not None:  # one operator (opset 23), with a scale of ones
            return g.op("RMSNormalization", x, g.const(np.ones(size, np.float32), np.float32), axis=-1, epsilon=eps)
        mean_square = g.op("ReduceMean", g.op("Pow", x, g.const(2.0, np.float32)), g.const([-1]), keepdims=1)
        return g.op("Div", x, g.op("Sqrt", g.op("Add", mean_square, g.const(eps, np.float32))))

    def linear(self, x: str, weight: str, bias: str | None = None) -> str:
        y = self.weights.matmul(self.g, self.ckpt, x, weight)
        return self.g.op("Add", y, self.weights.small(self.g, self.ckpt, bias)) if bias else y

    def silu(self, x: str) -> str:
        return self.g.op("Mul", x, self.g.op("Sigmoid", x))

    # -- MLPs -------------------------------------------------------------------------------------------------

    @scoped("mlp")
    def relu2_mlp(self, x: str, up: str, down: str, bias: bool) -> str:
        """Nemotron-H's MLP: down(relu(up(x))²)."""
        h = self.g.op("Relu", self.linear(x, f"{up}.weight", f"{up}.bias" if bias else None))
        return self.linear(self.g.op("Mul", h, h), f"{down}.weight", f"{down}.bias" if bias else None)

    @scoped("mlp")
    def swiglu_mlp(self, x: str, prefix: str, bias: bool) -> str:
        """Llama's MLP: down(silu(gate(x)) * up(x))."""
        def proj(name: str, v: str) -> str:
            return self.linear(v, f"{prefix}.{name}.weight", f"{prefix}.{name}.bias" if bias else None)

        return proj("down_proj", self.g.op("Mul", self.silu(proj("gate_proj", x)), proj("up_proj", x)))

    # -- attention --------------------------------------------------------------------------------------------

    @scoped("attention")
    def attention(self, x: str, layer: int, prefix: str, *, heads: int, kv_heads: int, head_dim: int,
                  bias: bool = False, out_bias: bool = False, qk_norm_eps: float | None = None,
                  inv_freq: np.ndarray | None = None) -> str:
        """Causal self-attention over the past keys/values and these tokens, with grouped KV heads.

        `qk_norm_eps`: Qwen3's RMSNorm on each head's queries and keys. `inv_freq`: rotary embedding
        frequencies ("rotate half" layout, as transformers applies them), or None for no positions.
        """
        a = _Attention(layer, prefix, heads, kv_heads, head_dim, bias, out_bias, qk_norm_eps, inv_freq)
        return self._fused_attention(x, a) if self.fused else self._portable_attention(x, a)

    def _fused_attention(self, x: str, a: _Attention) -> str:
        """ONNX Runtime's GroupQueryAttention on [batch, sequence, heads * head_dim] projections, appending
        to K/V buffers that the runtime binds as both past and present."""
        g = self.g
        if a.head_dim % 8:
            raise ConversionError(f"ONNX Runtime's fused attention needs a head size divisible by 8, this model's "
                                  f"is {a.head_dim}: convert with --flavor portable")
        kv_shape = (BATCH, a.kv_heads, KV_CAPACITY, a.head_dim)
        past_k, past_v = self.state(a.layer, "key", kv_shape), self.state(a.layer, "value", kv_shape)
        past_len = self.past_length(past_k)
        rope = None
        if a.inv_freq is not None:  # cos/sin [sequence, 1, head_dim]: broadcast over the heads
            rope = tuple(g.op("Unsqueeze", t, g.const([1])) for t in self._rotary(a.inv_freq, past_len, x))

        def positioned(proj: str, n: int, norm: str | None) -> str:
            """Queries or keys [batch, sequence, n * head_dim], normed per head and rotated as the layer says."""
            v = self.linear(x, f"{a.prefix}.{proj}.weight", f"{a.prefix}.{proj}.bias" if a.bias else None)
            if norm is None and rope is None:
                return v
            v = g.op("Reshape", v, g.const([0, 0, n, a.head_dim]))
            if norm is not None:
                v = self.rms_norm(v, norm, a.qk_norm_eps or 0.0)
            if rope is not None:
                v = self._rotate(v, *rope, a.head_dim)
            return g.op("Reshape", v, g.const([0, 0, n * a.head_dim]))

        q = positioned("q_proj", a.heads, a.norm("q"))
        k = positioned("k_proj", a.kv_heads, a.norm("k"))
        v = self.linear(x, f"{a.prefix}.v_proj.weight", f"{a.prefix}.v_proj.bias" if a.bias else None)
        total = g.op("Add", past_len, self.dim(x, 1))
        last = g.op("Cast", g.op("Sub", total, g.const([1])), to=6)  # int32, one per sequence of the batch
        seqlens = g.op("Expand", last, self.dim(x, 0))
        out, present_k, present_v = g.op("GroupQueryAttention", q, k, v, past_k, past_v, seqlens,
                                         g.op("Cast", g.op("Squeeze", total), to=6), outputs=3,
                                         domain="com.microsoft", num_heads=a.heads, kv_num_heads=a.kv_heads)
        self.present(present_k, a.layer, "key", kv_shape)
        self.present(present_v, a.layer, "value", kv_shape)
        return self.linear(out, f"{a.prefix}.o_proj.weight", f"{a.prefix}.o_proj.bias" if a.out_bias else None)

    def _portable_attention(self, x: str, a: _Attention) -> str:
        """Standard operators: the new K/V appended to the past by Concat, scores by MatMul, a causal mask."""
        layer, prefix, heads, kv_heads, head_dim = a.layer, a.prefix, a.heads, a.kv_heads, a.head_dim
        bias, out_bias, qk_norm_eps, inv_freq = a.bias, a.out_bias, a.qk_norm_eps, a.inv_freq
        g = self.g
        kv_shape = (BATCH, kv_heads, PAST, head_dim)
        past_k, past_v = self.state(layer, "key", kv_shape), self.state(layer, "value", kv_shape)
        past_len = self.past_length(past_k)

        def heads_of(proj: str, n: int, norm: str | None) -> str:
            v = self.linear(x, f"{prefix}.{proj}.weight", f"{prefix}.{proj}.bias" if bias else None)
            v = g.op("Reshape", v, g.const([0, 0, n, head_dim]))
            if norm is not None:
                v = self.rms_norm(v, norm, qk_norm_eps or 0.0)
            return g.op("Transpose", v, perm=[0, 2, 1, 3])  # [batch, heads, sequence, head_dim]

        with_norm = qk_norm_eps is not None
        q = heads_of("q_proj", heads, f"{prefix}.q_norm.weight" if with_norm else None)
        k = heads_of("k_proj", kv_heads, f"{prefix}.k_norm.weight" if with_norm else None)
        v = heads_of("v_proj", kv_heads, None)
        if inv_freq is not None:
            cos, sin = self._rotary(inv_freq, past_len, x)
            q, k = self._rotate(q, cos, sin, head_dim), self._rotate(k, cos, sin, head_dim)
        k = g.op("Concat", past_k, k, axis=2)
        v = g.op("Concat", past_v, v, axis=2)
        self.present(k, layer, "key", kv_shape)
        self.present(v, layer, "value", kv_shape)

        # queries of the heads sharing one KV head become rows of one matrix: [b, kv, rep * L, d]
        rep = heads // kv_heads
        seq = self.dim(x, 1)
        q = g.op("Reshape", q, g.const([0, kv_heads, -1, head_dim]))
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
        scores = g.op("Mul", scores, g.const(head_dim**-0.5, np.float32))
        # [b, kv, rep, L, T] so that the causal mask [L, T] broadcasts
        total = g.op("Shape", k, start=2, end=3)
        scores = g.op("Reshape", scores, g.op("Concat", g.const([0, kv_heads, rep]), seq, total, axis=0))
        rows = g.op("Add", g.op("Unsqueeze", g.op("Range", g.const(0), g.op("Squeeze", seq), g.const(1)),
                                g.const([1])), past_len)
        cols = g.op("Unsqueeze", g.op("Range", g.const(0), g.op("Squeeze", total), g.const(1)), g.const([0]))
        scores = g.op("Where", g.op("LessOrEqual", cols, rows), scores, g.const(-np.inf, np.float32))
        probs = g.op("Softmax", scores, axis=-1)
        probs = g.op("Reshape", probs, g.op("Concat", g.const([0, kv_heads, -1]), total, axis=0))
        out = g.op("MatMul", probs, v)  # [b, kv, rep * L, d]
        out = g.op("Reshape", out, g.const([0, heads, -1, head_dim]))
        out = g.op("Reshape", g.op("Transpose", out, perm=[0, 2, 1, 3]), g.const([0, 0, heads * head_dim]))
        return self.linear(out, f"{prefix}.o_proj.weight", f"{prefix}.o_proj.bias" if out_bias else None)

    def _rotary(self, inv_freq: np.ndarray, past_len: str, x: str) -> tuple[str, str]:
        """cos and sin [sequence, head_dim] for positions past_len ... past_len + sequence - 1."""
        key = tuple(float(f) for f in inv_freq)
        if key not in self._rope:
            g = self.g
            start = g.op("Squeeze", past_len)
            positions = g.op("Range", start, g.op("Add", start, g.op("Squeeze", self.dim(x, 1))), g.const(1))
            positions = g.op("Unsqueeze", g.op("Cast", positions, to=1), g.const([1]))
            freqs = g.op("Mul", positions, g.const(inv_freq.reshape(1, -1), np.float32))
            angles = g.op("Concat", freqs, freqs, axis=-1)
            self._rope[key] = (g.op("Cos", angles), g.op("Sin", angles))
        return self._rope[key]

    def _rotate(self, x: str, cos: str, sin: str, head_dim: int) -> str:
        g = self.g
        half = head_dim // 2
        first = g.op("Slice", x, g.const([0]), g.const([half]), g.const([-1]))
        second = g.op("Slice", x, g.const([half]), g.const([head_dim]), g.const([-1]))
        rotated = g.op("Concat", g.op("Neg", second), first, axis=-1)
        return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rotated, sin))

    # -- Mamba2 -----------------------------------------------------------------------------------------------

    @scoped("mamba2")
    def mamba2(self, x: str, layer: int, prefix: str, m: Mamba2Dims) -> str:
        """A Mamba2 mixer with explicit conv and SSM states, exact for any number of new tokens."""
        g = self.g
        proj = self.linear(x, f"{prefix}.in_proj.weight")
        gate, xbc, dt = g.op("Split", proj, g.const([m.d_inner, m.conv_dim, m.heads]), axis=-1, outputs=3)
        xbc = self._causal_conv(xbc, layer, prefix, m)
        xs, b, c = g.op("Split", xbc, g.const([m.d_inner, m.groups * m.state_size, m.groups * m.state_size]),
                        axis=-1, outputs=3)
        dt = g.op("Softplus", g.op("Add", dt, self.weights.small(g, self.ckpt, f"{prefix}.dt_bias")))
        a_log = self.ckpt.load(f"{prefix}.A_log")
        neg_a = g.const(-np.exp(a_log.astype(np.float32)), np.float32)
        self.ckpt.release(f"{prefix}.A_log")
        scan = self._fused_scan if self.fused else self._portable_scan
        y = scan(xs, b, c, dt, neg_a, layer, m)

        d = self.weights.small(g, self.ckpt, f"{prefix}.D", repeat=m.head_dim)  # [d_inner]: one per channel
        y = g.op("Add", y, g.op("Mul", xs, d))

        # gated RMSNorm, each group of channels normalised on its own
        y = g.op("Mul", y, self.silu(gate))
        grouped = g.op("Reshape", y, g.const([0, 0, m.groups, m.d_inner // m.groups]))
        y = g.op("Reshape", self._normalize(grouped, m.eps, m.d_inner // m.groups), g.const([0, 0, m.d_inner]))
        y = g.op("Mul", y, self.weights.small(g, self.ckpt, f"{prefix}.norm.weight"))
        return self.linear(y, f"{prefix}.out_proj.weight")

    def _causal_conv(self, xbc: str, layer: int, prefix: str, m: Mamba2Dims) -> str:
        """SiLU(causal depthwise conv) of `xbc` [b, L, conv_dim] over the conv state (the last kernel-1
        inputs) and these tokens; declares the state. ONNX Runtime's CausalConvWithState does it in one
        operator, channels last (no transposes; its state is [b, kernel-1, conv_dim]); the portable form
        convolves [past inputs, new inputs], channels first (its state is [b, conv_dim, kernel-1])."""
        g = self.g
        weight = self.weights.small(g, self.ckpt, f"{prefix}.conv1d.weight")
        bias = [self.weights.small(g, self.ckpt, f"{prefix}.conv1d.bias")] if m.conv_bias else []
        if self.fused:
            conv_shape: tuple[int | str, ...] = (BATCH, m.conv_kernel - 1, m.conv_dim)
            past = self.state(layer, "conv", conv_shape, in_place=True)
            out, present = g.op("CausalConvWithState", xbc, weight, *(bias or [""]), past, outputs=2,
                                domain="com.microsoft", activation="silu", channels_last=1)
            self.present(present, layer, "conv", conv_shape)
            return out
        conv_shape = (BATCH, m.conv_dim, m.conv_kernel - 1)
        past = self.state(layer, "conv", conv_shape)
        window = g.op("Concat", past, g.op("Transpose", xbc, perm=[0, 2, 1]), axis=2)
        present = g.op("Slice", window, g.const([1 - m.conv_kernel]), g.const([INT64_MAX]), g.const([2]))
        out = self.silu(g.op("Conv", window, weight, *bias, group=m.conv_dim))
        self.present(present, layer, "conv", conv_shape)
        return g.op("Transpose", out, perm=[0, 2, 1])

    def _fused_scan(self, xs: str, b: str, c: str, dt: str, neg_a: str, layer: int, m: Mamba2Dims) -> str:
        """The SSM recurrence as ONNX Runtime's LinearAttention ("gated" rule): per head, state = exp(dt A)
        state + B (dt x)^T and y = state^T C, with B and C shared by the heads of a group (its "keys" and
        "queries"). The state is [b, heads, state_size, head_dim]. Returns y [b, L, d_inner] (no D skip)."""
        g = self.g
        ssm_shape = (BATCH, m.heads, m.state_size, m.head_dim)
        # in place: LinearAttention copies the past into the present, then updates that (2x faster than a
        # fresh 1 MB present per layer and token, measured; docs/benchmarks.md)
        past = self.state(layer, "ssm", ssm_shape, in_place=True)
        dt = g.op("Max", dt, self.dt_floor(xs, m.time_step_min))
        x_dt = g.op("Mul", g.op("Reshape", xs, g.const([0, 0, m.heads, m.head_dim])),
                    g.op("Unsqueeze", dt, g.const([-1])))
        y, state = g.op("LinearAttention", c, b, g.op("Reshape", x_dt, g.const([0, 0, m.d_inner])), past,
                        g.op("Mul", dt, neg_a), outputs=2, domain="com.microsoft", q_num_heads=m.groups,
                        kv_num_heads=m.heads, update_rule="gated", scale=1.0)
        self.present(state, layer, "ssm", ssm_shape)
        return y

    def _portable_scan(self, xs: str, b: str, c: str, dt: str, neg_a: str, layer: int, m: Mamba2Dims) -> str:
        """The SSM scan in standard operators (chunked, `_ssd`); the state is [b, heads, head_dim, state_size].
        No control flow: TensorRT for RTX 1.7's builder crashes on `If`, and the chunked scan is exact for
        one token too (a 1-token chunk)."""
        ssm_shape = (BATCH, m.heads, m.head_dim, m.state_size)
        past = self.state(layer, "ssm", ssm_shape)
        y, final = self._ssd(xs, b, c, dt, neg_a, past, m)
        self.present(final, layer, "ssm", ssm_shape)
        return y

    def _per_head(self, v: str, m: Mamba2Dims) -> str:
        """B or C [b, L, groups * state] -> [b, L, heads, state] (the heads of a group share it)."""
        g = self.g
        v = g.op("Reshape", v, g.const([0, 0, m.groups, 1, m.state_size]))
        v = g.op("Expand", v, g.const([1, 1, 1, m.heads // m.groups, 1]))
        return g.op("Reshape", v, g.const([0, 0, m.heads, m.state_size]))

    def _ssd(self, xs: str, b: str, c: str, dt: str, neg_a: str, past: str, m: Mamba2Dims) -> list[str]:
        """The selective scan in Mamba2's chunked ("SSD") form, vectorised over chunks.

        Chunks have min(chunk_size, L) tokens; the last is padded with dt = 0, which neither decays nor
        feeds the state, so the result is exact for any L, and one decode token costs one 1-token chunk.
        Returns y [b, L, d_inner] (without the D skip) and the final state [b, heads, head_dim, state].
        """
        g = self.g
        # transformers clamps dt from below in its chunked scan only, not in its one-token step
        dt = g.op("Max", dt, g.const(m.time_step_min, np.float32))
        seq = self.dim(xs, 1)
        chunk = g.op("Min", seq, g.const([m.chunk_size]))
        n_chunks = g.op("Div", g.op("Sub", g.op("Add", seq, chunk), g.const([1])), chunk)
        pad = g.op("Sub", g.op("Mul", n_chunks, chunk), seq)

        def chunked(v: str, tail: list[int]) -> str:
            """[b, L, ...] -> zero-padded [b, n_chunks, chunk, ...]."""
            v = g.op("Pad", v, g.op("Concat", g.const([0]), pad, axis=0), g.const(0.0, np.float32), g.const([1]))
            return g.op("Reshape", v, g.op("Concat", g.const([0, -1]), chunk, g.const(tail), axis=0))

        x_dt = g.op("Mul", g.op("Reshape", xs, g.const([0, 0, m.heads, m.head_dim])), g.op("Unsqueeze", dt,
                                                                                            g.const([-1])))
        # head-major chunks: [b, n, heads, chunk, ...]
        x_dt = g.op("Transpose", chunked(x_dt, [m.heads, m.head_dim]), perm=[0, 1, 3, 2, 4])
        bh = g.op("Transpose", chunked(self._per_head(b, m), [m.heads, m.state_size]), perm=[0, 1, 3, 2, 4])
        ch = g.op("Transpose", chunked(self._per_head(c, m), [m.heads, m.state_size]), perm=[0, 1, 3, 2, 4])
        a = g.op("Transpose", chunked(g.op("Mul", dt, neg_a), [m.heads]), perm=[0, 1, 3, 2])  # [b, n, h, chunk]
        a_cum = g.op("CumSum", a, g.const(-1))

        # 1. within chunks: attention-like, with decay exp(a[s+1] + ... + a[l]) for s <= l
        scores = g.op("MatMul", ch, g.op("Transpose", bh, perm=[0, 1, 2, 4, 3]))
        y = g.op("MatMul", g.op("Mul", scores, self._decay_matrix(a)), x_dt)

        # 2. each chunk's own contribution to the state at its end
        a_last = g.op("Slice", a_cum, g.const([-1]), g.const([INT64_MAX]), g.const([-1]))
        to_end = g.op("Exp", g.op("Sub", a_last, a_cum))
        states = g.op("MatMul", g.op("Transpose", g.op("Mul", x_dt, g.op("Unsqueeze", to_end, g.const([-1]))),
                                     perm=[0, 1, 2, 4, 3]), bh)  # [b, n, h, head_dim, state]

        # 3. states at chunk starts: the past state and every chunk's contribution, decayed across chunks
        states = g.op("Concat", g.op("Unsqueeze", past, g.const([1])), states, axis=1)  # [b, n + 1, h, p, s]
        flat = g.op("Transpose", g.op("Reshape", states, g.const([0, 0, m.heads, -1])), perm=[0, 2, 1, 3])
        chunk_decay = g.op("Squeeze", g.op("Transpose", a_last, perm=[0, 2, 1, 3]), g.const([-1]))  # [b, h, n]
        chunk_decay = g.op("Pad", chunk_decay, g.const([1, 0]), g.const(0.0, np.float32), g.const([-1]))
        starts = g.op("MatMul", self._decay_matrix(chunk_decay), flat)  # [b, h, n + 1, p * s]
        starts = g.op("Reshape", g.op("Transpose", starts, perm=[0, 2, 1, 3]),
                      g.const([0, 0, m.heads, m.head_dim, m.state_size]))
        final = g.op("Gather", starts, g.op("Squeeze", n_chunks), axis=1)
        entering = g.op("Slice", starts, g.const([0]), n_chunks, g.const([1]))

        # 4. what the state entering each chunk adds to its outputs
        from_start = g.op("MatMul", ch, g.op("Transpose", entering, perm=[0, 1, 2, 4, 3]))
        y = g.op("Add", y, g.op("Mul", from_start, g.op("Unsqueeze", g.op("Exp", a_cum), g.const([-1]))))

        # [b, n, h, chunk, p] -> [b, L, h * p]
        y = g.op("Reshape", g.op("Transpose", y, perm=[0, 1, 3, 2, 4]), g.const([0, -1, m.d_inner]))
        y = g.op("Slice", y, g.const([0]), seq, g.const([1]))
        return [y, final]

    def _decay_matrix(self, a: str) -> str:
        """exp(a[j+1] + ... + a[i]) for j <= i, else 0, over the last axis of `a` ([..., n] -> [..., n, n]).

        Summed as a masked cumulative sum, as transformers does, rather than a difference of cumulative
        sums, which loses precision when the sums grow large."""
        g = self.g
        n = self.dim(a, -1)
        index = g.op("Range", g.const(0), g.op("Squeeze", n), g.const(1))
        rows, cols = g.op("Unsqueeze", index, g.const([1])), g.op("Unsqueeze", index, g.const([0]))
        repeated = g.op("Expand", g.op("Unsqueeze", a, g.const([-1])), g.op("Concat", g.const([1]), n, axis=0))
        below = g.op("Where", g.op("Less", cols, rows), repeated, g.const(0.0, np.float32))
        sums = g.op("CumSum", below, g.const(-2))
        return g.op("Where", g.op("LessOrEqual", cols, rows), g.op("Exp", sums), g.const(0.0, np.float32))


@dataclass(frozen=True)
class _Attention:
    """One attention layer's description, as `Decoder.attention` takes it."""

    layer: int
    prefix: str
    heads: int
    kv_heads: int
    head_dim: int
    bias: bool
    out_bias: bool
    qk_norm_eps: float | None
    inv_freq: np.ndarray | None

    def norm(self, which: str) -> str | None:
        """The per-head RMSNorm weight of the queries or keys (Qwen3), if the layer has one."""
        return f"{self.prefix}.{which}_norm.weight" if self.qk_norm_eps is not None else None


@dataclass(frozen=True)
class Mamba2Dims:
    """Sizes of one Mamba2 mixer."""

    heads: int
    head_dim: int
    state_size: int
    groups: int
    conv_kernel: int
    conv_bias: bool
    chunk_size: int
    time_step_min: float
    eps: float

    @property
    def d_inner(self) -> int:
        return self.heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.groups * self.state_size
