"""NVIDIA Nemotron-H: Mamba2, attention, MLP and mixture-of-experts layers in one residual stack.

Nemotron Nano 2 mixes Mamba2 (`M`), attention (`*`) and MLP (`-`) layers; Nemotron 3 / 3.5 replace the
MLPs with mixture-of-experts layers (`E`, converters/nemotron_h_moe.py) and may carry an MTP head. Layer
kinds come from the legacy `hybrid_override_pattern` string ("M-M*-...") or the transformers 5.x
`layers_block_type` list. transformers 5.x writes every MoE default into each saved config, so the
presence of MoE keys says nothing: a model is MoE only if a layer is `E` / `moe`.

llama.cpp tells layer kinds apart by per-layer arrays: a layer with no KV heads and no FFN is a Mamba2
layer, one with KV heads is attention, one with an FFN is an MLP, or in `nemotron_h_moe` (any `E` layer)
a MoE layer, which is why that architecture cannot hold a dense MLP layer beside its MoE layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np

from converters import nemotron_h_moe
from converters.hparams import flag, hparam, layer_count, positive
from converters.nemotron_h_moe import MTP_PREFIX, MoEArgs
from converters.onnx_layers import Decoder, Mamba2Dims
from converters.onnx_moe import moe_block
from converters.tensors import NameMap, OutputTensor, PlannedTensor, direct, transformed
from localai.errors import ConversionError
from localai.units import shown

GGUF_ARCH = gguf.MODEL_ARCH.NEMOTRON_H
IGNORED_TENSORS: tuple[str, ...] = ()

MAMBA, ATTENTION, MLP, MOE = "M", "*", "-", "E"
_LIST_KINDS = {"linear_attention": MAMBA, "mamba": MAMBA, "full_attention": ATTENTION, "attention": ATTENTION,
               "mlp": MLP, "moe": MOE}


@dataclass(frozen=True)
class ModelArgs:
    vocab_size: int
    hidden_size: int
    layers: str  # one character per layer: M (Mamba2), * (attention), - (MLP), E (mixture of experts)
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    mamba_num_heads: int
    mamba_head_dim: int
    ssm_state_size: int
    n_groups: int
    conv_kernel: int
    use_conv_bias: bool
    mlp_bias: bool
    norm_eps: float
    tie_word_embeddings: bool
    context_length: int
    chunk_size: int = 128  # of the chunked scan; any value gives the same result, it sets the cost
    time_step_min: float = 1e-3  # transformers clamps dt to at least this
    moe: MoEArgs | None = None  # set when a layer is E
    mtp_layers: int = 0  # MTP heads config.json declares
    mtp_layout: Any = None  # their layer kinds as config.json spells them (checked only if converted)
    keep_mtp: bool = True  # convert the MTP head (GGUF); False: leave it out

    @property
    def gguf_arch(self) -> gguf.MODEL_ARCH:
        return nemotron_h_moe.GGUF_ARCH if self.moe else GGUF_ARCH

    @property
    def with_mtp(self) -> bool:
        """Whether the converted model carries the MTP head."""
        return self.keep_mtp and self.mtp_layers > 0

    @property
    def d_inner(self) -> int:
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.n_groups * self.ssm_state_size

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelArgs:
        layers = _layer_pattern(config)
        for key, wanted in (("mamba_hidden_act", "silu"), ("mlp_hidden_act", "relu2")):
            if config.get(key, wanted) != wanted:
                raise ConversionError(f"config.json: {key}={config[key]!r} is not supported (llama.cpp needs {wanted})")
        if config.get("use_bias") or config.get("mamba_proj_bias"):
            raise ConversionError("config.json: Mamba in_proj/out_proj biases are not supported by llama.cpp")
        hidden = positive("hidden_size", hparam(config, "hidden_size"))
        heads = hparam(config, "num_attention_heads")
        args = cls(
            vocab_size=positive("vocab_size", hparam(config, "vocab_size")),
            hidden_size=hidden,
            layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=hparam(config, "num_key_value_heads", default=heads),
            head_dim=hparam(config, "head_dim", "attention_head_dim", default=hidden // max(heads, 1)),
            intermediate_size=(hparam(config, "intermediate_size") if MLP in layers
                               else hparam(config, "intermediate_size", default=0)),
            mamba_num_heads=positive("mamba_num_heads", hparam(config, "mamba_num_heads")),
            mamba_head_dim=positive("mamba_head_dim", hparam(config, "mamba_head_dim")),
            ssm_state_size=positive("ssm_state_size", hparam(config, "ssm_state_size")),
            n_groups=positive("n_groups", hparam(config, "n_groups", "mamba_n_groups", default=8)),
            conv_kernel=positive("conv_kernel", hparam(config, "conv_kernel", "mamba_d_conv", default=4)),
            use_conv_bias=hparam(config, "use_conv_bias", "mamba_conv_bias", cast=flag, default=True),
            mlp_bias=hparam(config, "mlp_bias", cast=flag, default=False),
            norm_eps=positive("layer_norm_epsilon",
                              hparam(config, "layer_norm_epsilon", "rms_norm_eps", cast=float, default=1e-5)),
            tie_word_embeddings=hparam(config, "tie_word_embeddings", cast=flag, default=False),
            context_length=positive("max_position_embeddings",
                                    hparam(config, "max_position_embeddings", default=4096)),
            chunk_size=positive("chunk_size", hparam(config, "chunk_size", "mamba_chunk_size", default=128)),
            time_step_min=hparam(config, "time_step_min", "mamba_dt_min", cast=float, default=1e-3),
            moe=MoEArgs.from_config(config) if MOE in layers else None,
            mtp_layers=nemotron_h_moe.mtp_layers(config) if MOE in layers else 0,
            mtp_layout=config.get("mtp_layers_block_type") or config.get("mtp_hybrid_override_pattern"),
        )
        if args.d_inner % args.n_groups:
            raise ConversionError(f"config.json: mamba inner size {args.d_inner} is not divisible by n_groups")
        kv_heads = args.num_key_value_heads
        if (ATTENTION in layers or args.mtp_layers) and (heads <= 0 or kv_heads <= 0 or heads % kv_heads):
            raise ConversionError("config.json: attention head counts are invalid")
        return args


def _layer_pattern(config: dict[str, Any]) -> str:
    pattern = config.get("hybrid_override_pattern")
    if isinstance(pattern, str) and pattern:
        kinds = pattern
    elif isinstance(block_types := config.get("layers_block_type"), list) and block_types:
        unknown = sorted({shown(t) for t in block_types if not isinstance(t, str) or t not in _LIST_KINDS})
        if unknown:
            raise ConversionError(f"config.json: unknown layers_block_type entries {unknown}")
        kinds = "".join(_LIST_KINDS[t] for t in block_types)
    else:
        raise ConversionError("config.json lacks 'hybrid_override_pattern' or 'layers_block_type'")
    bad = sorted(set(kinds) - {MAMBA, ATTENTION, MLP, MOE})
    if bad:
        raise ConversionError(f"config.json: hybrid_override_pattern has unknown layer kinds {bad}")
    layer_count(len(kinds) + bool(config.get("num_nextn_predict_layers")))
    declared = config.get("num_hidden_layers")
    if isinstance(declared, int) and declared != len(kinds):
        raise ConversionError(f"config.json: num_hidden_layers={declared} but the layer pattern has {len(kinds)}")
    return kinds


def write_hparams(args: ModelArgs, writer: gguf.GGUFWriter) -> None:
    if args.moe and MLP in args.layers:
        raise ConversionError("a dense MLP layer ('-') beside MoE layers ('E') cannot be written as GGUF: llama.cpp's "
                              "nemotron_h_moe reads every feed-forward layer as MoE (convert --to onnx instead)")
    blocks = len(args.layers) + int(args.with_mtp)
    ffn = {MLP: args.intermediate_size, MOE: args.moe.expert_size if args.moe else 0}
    writer.add_context_length(args.context_length)
    writer.add_embedding_length(args.hidden_size)
    writer.add_block_count(blocks)
    writer.add_vocab_size(args.vocab_size)
    feed_forward = [ffn.get(k, 0) for k in args.layers]
    attention = [args.num_key_value_heads if k == ATTENTION else 0 for k in args.layers]
    if args.with_mtp:  # the MTP head is one more block after the trunk, with attention and MoE
        feed_forward.append(ffn[MOE])
        attention.append(args.num_key_value_heads)
        writer.add_nextn_predict_layers(1)
    writer.add_feed_forward_length(feed_forward)
    writer.add_head_count(args.num_attention_heads)
    writer.add_head_count_kv(attention)
    writer.add_key_length(args.head_dim)
    writer.add_value_length(args.head_dim)
    writer.add_layer_norm_eps(args.norm_eps)
    writer.add_layer_norm_rms_eps(args.norm_eps)
    writer.add_ssm_conv_kernel(args.conv_kernel)
    writer.add_ssm_inner_size(args.d_inner)
    writer.add_ssm_state_size(args.ssm_state_size)
    writer.add_ssm_time_step_rank(args.mamba_num_heads)
    writer.add_ssm_group_count(args.n_groups)
    if args.moe:
        nemotron_h_moe.write_hparams(args.moe, writer)


def tensor_plan(args: ModelArgs, present: set[str]) -> list[PlannedTensor]:
    prefix = "model" if "model.embeddings.weight" in present else "backbone"
    gguf_name = NameMap(args.gguf_arch, len(args.layers) + int(args.with_mtp))
    h, v = args.hidden_size, args.vocab_size
    plan: list[PlannedTensor] = [direct("token_embd.weight", f"{prefix}.embeddings.weight", (v, h))]
    for i, kind in enumerate(args.layers):
        block = f"{prefix}.layers.{i}"
        plan.append(direct(gguf_name(f"backbone.layers.{i}.norm.weight"), f"{block}.norm.weight", (h,)))
        if kind == MAMBA:
            plan += _mamba_tensors(args, i, f"{block}.mixer", gguf_name, present)
        elif kind == ATTENTION:
            plan += [direct(gguf_name(f"backbone.layers.{i}.mixer.{proj}.weight"), f"{block}.mixer.{proj}.weight",
                            shape) for proj, shape in _attention_shapes(args).items()]
        elif kind == MOE:
            assert args.moe is not None
            plan += nemotron_h_moe.moe_tensors(args.moe, h, f"{block}.mixer", i, gguf_name)
        else:
            ff = args.intermediate_size
            for proj, shape in (("up_proj", (ff, h)), ("down_proj", (h, ff))):
                canonical = f"backbone.layers.{i}.mixer.{proj}"
                plan.append(direct(gguf_name(f"{canonical}.weight"), f"{block}.mixer.{proj}.weight", shape))
                if args.mlp_bias:
                    plan.append(direct(gguf_name(f"{canonical}.bias"), f"{block}.mixer.{proj}.bias", shape[:1]))
    if args.with_mtp:
        plan += _mtp_tensors(args, present, gguf_name)
    plan.append(direct("output_norm.weight", f"{prefix}.norm_f.weight", (h,)))
    if not args.tie_word_embeddings or "lm_head.weight" in present:
        plan.append(direct("output.weight", "lm_head.weight", (v, h)))
    return plan


def _mtp_tensors(args: ModelArgs, present: set[str], gguf_name: NameMap) -> list[PlannedTensor]:
    """The MTP head as llama.cpp's block after the trunk, refusing a head llama.cpp cannot read."""
    nemotron_h_moe.check_mtp(args.mtp_layers, args.mtp_layout)
    if not any(name.startswith(MTP_PREFIX) for name in present):
        raise ConversionError("config.json declares an MTP head but the checkpoint has no mtp.* tensors "
                              "(transformers drops them when it saves a model): convert with --no-mtp")
    assert args.moe is not None
    return nemotron_h_moe.mtp_tensors(args.moe, args.hidden_size, _attention_shapes(args), len(args.layers), gguf_name)


def dropped_tensors(args: ModelArgs, present: set[str]) -> list[str]:
    """Checkpoint tensors left out on purpose: a declared MTP head that is not converted."""
    if not args.mtp_layers or args.with_mtp:
        return []
    return [name for name in present if name.startswith(MTP_PREFIX)]


def _attention_shapes(args: ModelArgs) -> dict[str, tuple[int, int]]:
    q, kv, h = args.num_attention_heads * args.head_dim, args.num_key_value_heads * args.head_dim, args.hidden_size
    return {"q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q)}


def _mamba_tensors(args: ModelArgs, layer: int, mixer: str, gguf_name: NameMap, present: set[str],
                   ) -> list[OutputTensor]:
    nh, conv_dim = args.mamba_num_heads, args.conv_dim
    canonical = f"backbone.layers.{layer}.mixer"  # the names gguf-py's map knows
    in_proj = 2 * args.d_inner + 2 * args.n_groups * args.ssm_state_size + nh
    plan = [
        direct(gguf_name(f"{canonical}.in_proj.weight"), f"{mixer}.in_proj.weight", (in_proj, args.hidden_size)),
        transformed(gguf_name(f"{canonical}.conv1d.weight"), f"{mixer}.conv1d.weight", (conv_dim, 1, args.conv_kernel),
                    lambda w: w.reshape(conv_dim, args.conv_kernel), keep_f32=True),
        # llama.cpp names the dt bias after Mamba-1's dt_proj
        direct(gguf_name(f"{canonical}.dt_proj.bias"), f"{mixer}.dt_bias", (nh,)),
        # llama.cpp takes A itself, not its log; A and D get a unit axis for broadcasting
        transformed(gguf_name(f"{canonical}.A_log"), f"{mixer}.A_log", (nh,), lambda a: (-np.exp(a)).reshape(nh, 1)),
        transformed(gguf_name(f"{canonical}.D"), f"{mixer}.D", (nh,), lambda d: d.reshape(nh, 1)),
        # the gated RMSNorm normalises each group separately: one row per group
        transformed(gguf_name(f"{canonical}.norm.weight"), f"{mixer}.norm.weight", (args.d_inner,),
                    lambda w: w.reshape(args.n_groups, args.d_inner // args.n_groups)),
        direct(gguf_name(f"{canonical}.out_proj.weight"), f"{mixer}.out_proj.weight", (args.hidden_size, args.d_inner)),
    ]
    conv_bias = f"{mixer}.conv1d.bias"
    if args.use_conv_bias or conv_bias in present:
        plan.append(direct(gguf_name(f"{canonical}.conv1d.bias"), conv_bias, (conv_dim,)))
    else:
        # llama.cpp's graph adds the conv bias unconditionally and crashes without one
        zeros = OutputTensor(gguf_name(f"{canonical}.conv1d.bias"), {}, lambda load: np.zeros(conv_dim, np.float32))
        plan.append(zeros)
    return plan


def build_onnx(args: ModelArgs, d: Decoder, present: set[str]) -> None:
    """The decoder graph: embeddings, the hybrid stack (pre-norm + residual around each mixer), the head."""
    prefix = "model" if "model.embeddings.weight" in present else "backbone"
    x, h = d.embed(f"{prefix}.embeddings.weight"), None
    for i, kind in enumerate(args.layers):
        block = f"{prefix}.layers.{i}"
        x, h = d.residual_norm(x, h, f"{block}.norm.weight", args.norm_eps)  # h: the previous mixer's output
        if kind == MAMBA:
            dims = Mamba2Dims(args.mamba_num_heads, args.mamba_head_dim, args.ssm_state_size, args.n_groups,
                              args.conv_kernel, f"{block}.mixer.conv1d.bias" in present, args.chunk_size,
                              args.time_step_min, args.norm_eps)
            h = d.mamba2(h, i, f"{block}.mixer", dims)
        elif kind == ATTENTION:  # Nemotron-H's attention has no positional embedding
            h = d.attention(h, i, f"{block}.mixer", heads=args.num_attention_heads,
                            kv_heads=args.num_key_value_heads, head_dim=args.head_dim)
        elif kind == MOE:
            assert args.moe is not None
            h = moe_block(d, h, f"{block}.mixer", args.moe, args.hidden_size)
        else:
            h = d.relu2_mlp(h, f"{block}.mixer.up_proj", f"{block}.mixer.down_proj", args.mlp_bias)
    head = "lm_head.weight" if "lm_head.weight" in present else f"{prefix}.embeddings.weight"
    d.head(d.g.op("Add", x, h), f"{prefix}.norm_f.weight", args.norm_eps, head, args.vocab_size)
