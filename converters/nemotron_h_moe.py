"""Nemotron 3's mixture-of-experts layers (`E` / `moe`) and its multi-token-prediction (MTP) head.

An `E` layer (transformers' `NemotronHMoE`): a float32 sigmoid router whose choice, not whose weights, adds
`e_score_correction_bias`; optionally limited to the best `topk_group` of `n_group` expert groups (a group
scores the sum of its two best experts); the top `num_experts_per_tok` experts, their sigmoid scores
normalised to sum 1 (`norm_topk_prob`) and scaled by `routed_scaling_factor`; experts `down(relu²(up(x)))`
stored one checkpoint tensor per expert; one shared expert of its own width added to the routed sum
(exactly one, whatever `n_shared_experts` says: transformers reads no such count).
LatentMoE (Nemotron 3 Super/Ultra) runs the routed experts between `fc1_latent_proj` (hidden -> latent) and
`fc2_latent_proj` (latent -> hidden); router and shared expert see the full hidden state.

The MTP head (`mtp.layers.0`: input fusion + attention, `mtp.layers.1`: MoE + final norm) is ignored by
transformers; llama.cpp's `nemotron_h_moe` loads one such head as an extra block after the trunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gguf

from converters.hparams import flag, hparam, positive
from converters.tensors import NameMap, PlannedTensor, StackedTensor, direct
from localai.errors import ConversionError

GGUF_ARCH = gguf.MODEL_ARCH.NEMOTRON_H_MOE
MAX_EXPERTS = 1024  # llama.cpp's LLAMA_MAX_EXPERTS: it aborts the process on more
MTP_PREFIX = "mtp."
_MTP_LAYOUTS = (["full_attention", "moe"], ["attention", "moe"], "*E")


@dataclass(frozen=True)
class MoEArgs:
    """The hyper-parameters every `E` layer (and the MTP head's MoE) shares."""

    experts: int  # n_routed_experts
    top_k: int  # num_experts_per_tok
    expert_size: int  # moe_intermediate_size
    shared_size: int  # moe_shared_expert_intermediate_size
    n_group: int
    topk_group: int
    norm_topk_prob: bool
    scaling: float  # routed_scaling_factor
    latent_size: int | None  # moe_latent_size (LatentMoE), or None

    @property
    def limits_groups(self) -> bool:
        """Whether group-limited routing can exclude experts (all groups chosen is plain top-k)."""
        return self.n_group > 1 and self.topk_group < self.n_group

    @property
    def per_group(self) -> int:
        return self.experts // self.n_group

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MoEArgs:
        experts = positive("n_routed_experts", hparam(config, "n_routed_experts", "num_local_experts"))
        n_group = positive("n_group", hparam(config, "n_group", default=1))
        args = cls(
            experts=experts,
            top_k=positive("num_experts_per_tok", hparam(config, "num_experts_per_tok")),
            expert_size=positive("moe_intermediate_size", hparam(config, "moe_intermediate_size")),
            shared_size=positive("moe_shared_expert_intermediate_size",
                                 hparam(config, "moe_shared_expert_intermediate_size")),
            n_group=n_group,
            topk_group=positive("topk_group", hparam(config, "topk_group", default=1)),  # transformers' default
            norm_topk_prob=hparam(config, "norm_topk_prob", cast=flag, default=True),
            scaling=hparam(config, "routed_scaling_factor", cast=float, default=1.0),
            latent_size=(positive("moe_latent_size", hparam(config, "moe_latent_size"))
                         if config.get("moe_latent_size") is not None else None),
        )
        args._check(config)
        return args

    def _check(self, config: dict[str, Any]) -> None:
        def refuse(reason: str) -> None:
            raise ConversionError(f"config.json: {reason}")

        if self.experts > MAX_EXPERTS:
            refuse(f"n_routed_experts={self.experts} is more than the {MAX_EXPERTS} experts localai converts "
                   "(llama.cpp's limit)")
        if self.experts % self.n_group:
            refuse(f"n_routed_experts={self.experts} is not divisible by n_group={self.n_group}")
        if self.topk_group > self.n_group:
            refuse(f"topk_group={self.topk_group} is more than n_group={self.n_group}")
        if self.per_group < 2:
            refuse(f"each of the {self.n_group} expert groups holds {self.per_group} expert; the router scores a "
                   "group by its two best experts")
        reachable = self.topk_group * self.per_group
        if self.top_k > reachable:
            refuse(f"num_experts_per_tok={self.top_k} is more than the {reachable} experts the chosen groups hold")
        if not (math.isfinite(self.scaling) and self.scaling > 0):
            refuse(f"routed_scaling_factor={self.scaling} must be a positive number")
        if config.get("mlp_bias"):
            refuse("mlp_bias with MoE layers is not supported (llama.cpp's shared and latent projections have none)")


def mtp_layers(config: dict[str, Any]) -> int:
    """How many MTP heads config.json declares (0: none)."""
    count = hparam(config, "num_nextn_predict_layers", default=0)
    if count < 0:
        raise ConversionError(f"config.json: num_nextn_predict_layers={count} must not be negative")
    return count


def check_mtp(config_layers: int, layout: object) -> None:
    """Refuse an MTP head llama.cpp cannot read, when it is to be converted (`--no-mtp` leaves it out)."""
    if config_layers > 1:
        raise ConversionError(f"config.json declares {config_layers} MTP layers; llama.cpp reads one "
                              "(convert with --no-mtp to leave them out)")
    if layout is not None and layout not in _MTP_LAYOUTS:
        raise ConversionError(f"config.json: MTP layer layout {layout!r} is not supported (only attention + moe; "
                              "convert with --no-mtp to leave it out)")


def write_hparams(moe: MoEArgs, writer: gguf.GGUFWriter) -> None:
    """The expert metadata of llama.cpp's nemotron_h_moe."""
    writer.add_expert_count(moe.experts)
    writer.add_expert_used_count(moe.top_k)
    writer.add_expert_shared_count(1)
    writer.add_expert_feed_forward_length(moe.expert_size)
    writer.add_expert_shared_feed_forward_length(moe.shared_size)
    writer.add_expert_weights_norm(moe.norm_topk_prob)
    writer.add_expert_weights_scale(moe.scaling)
    writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    if moe.limits_groups:  # llama.cpp requires fewer chosen groups than groups
        writer.add_expert_group_count(moe.n_group)
        writer.add_expert_group_used_count(moe.topk_group)
    if moe.latent_size is not None:
        writer.add_moe_latent_size(moe.latent_size)


def moe_tensors(moe: MoEArgs, hidden: int, mixer: str, block: int, gguf_name: NameMap) -> list[PlannedTensor]:
    """The GGUF tensors of one MoE mixer whose checkpoint tensors start with `mixer` (GGUF block `block`)."""
    width = moe.latent_size or hidden
    canonical = f"backbone.layers.{block}.mixer"  # the names gguf-py's map knows
    plan: list[PlannedTensor] = [
        # the router stays float32 whatever the type: its choices are discrete
        direct(gguf_name(f"{canonical}.gate.weight"), f"{mixer}.gate.weight", (moe.experts, hidden), keep_f32=True),
        direct(gguf_name(f"{canonical}.gate.e_score_correction.bias"), f"{mixer}.gate.e_score_correction_bias",
               (moe.experts,)),
        StackedTensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.FFN_UP_EXP].format(bid=block) + ".weight",
                      tuple(f"{mixer}.experts.{e}.up_proj.weight" for e in range(moe.experts)),
                      (moe.expert_size, width), active=moe.top_k),
        StackedTensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.FFN_DOWN_EXP].format(bid=block) + ".weight",
                      tuple(f"{mixer}.experts.{e}.down_proj.weight" for e in range(moe.experts)),
                      (width, moe.expert_size), active=moe.top_k),
        direct(gguf_name(f"{canonical}.shared_experts.up_proj.weight"), f"{mixer}.shared_experts.up_proj.weight",
               (moe.shared_size, hidden)),
        direct(gguf_name(f"{canonical}.shared_experts.down_proj.weight"), f"{mixer}.shared_experts.down_proj.weight",
               (hidden, moe.shared_size)),
    ]
    if moe.latent_size is not None:
        plan += [direct(gguf_name(f"{canonical}.fc1_latent_proj.weight"), f"{mixer}.fc1_latent_proj.weight",
                        (moe.latent_size, hidden)),
                 direct(gguf_name(f"{canonical}.fc2_latent_proj.weight"), f"{mixer}.fc2_latent_proj.weight",
                        (hidden, moe.latent_size))]
    return plan


def mtp_tensors(moe: MoEArgs, hidden: int, attention: dict[str, tuple[int, ...]], block: int,
                gguf_name: NameMap) -> list[PlannedTensor]:
    """llama.cpp's MTP block `block` (after the trunk) from `mtp.layers.0` and `mtp.layers.1`.

    `attention`: the shape of each attention projection (q_proj, k_proj, v_proj, o_proj)."""
    fusion, ffn = "mtp.layers.0", "mtp.layers.1"

    def named(tensor: gguf.MODEL_TENSOR) -> str:
        return gguf.TENSOR_NAMES[tensor].format(bid=block) + ".weight"

    plan: list[PlannedTensor] = [
        direct(named(gguf.MODEL_TENSOR.NEXTN_ENORM), f"{fusion}.enorm.weight", (hidden,)),
        direct(named(gguf.MODEL_TENSOR.NEXTN_HNORM), f"{fusion}.hnorm.weight", (hidden,)),
        direct(named(gguf.MODEL_TENSOR.NEXTN_EH_PROJ), f"{fusion}.eh_proj.weight", (hidden, 2 * hidden)),
        direct(named(gguf.MODEL_TENSOR.ATTN_NORM), f"{fusion}.norm.weight", (hidden,)),
    ]
    plan += [direct(gguf_name(f"backbone.layers.{block}.mixer.{proj}.weight"), f"{fusion}.mixer.{proj}.weight", shape)
             for proj, shape in attention.items()]
    plan.append(direct(named(gguf.MODEL_TENSOR.ATTN_POST_NORM), f"{ffn}.norm.weight", (hidden,)))
    plan += moe_tensors(moe, hidden, f"{ffn}.mixer", block, gguf_name)
    plan.append(direct(named(gguf.MODEL_TENSOR.NEXTN_SHARED_HEAD_NORM), f"{ffn}.final_layernorm.weight", (hidden,)))
    return plan
