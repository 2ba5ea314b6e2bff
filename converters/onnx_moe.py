"""Nemotron 3's mixture-of-experts mixer as ONNX: the router, each expert on the tokens routed to it, the
shared expert, and LatentMoE's projections (converters/nemotron_h_moe.py describes the layer).

Standard operators only, in both flavours: ONNX Runtime 1.32's `com.microsoft.MoE` / `QMoE` have no
squared-ReLU experts on the CPU (only CUDA's kernels do), so they cannot run Nemotron's experts here
(docs/onnx-conversion.md). Every weight type of onnx_quant.py applies to the experts unchanged.

- `ort` flavour: each expert runs only on the tokens routed to it (NonZero, Gather, ScatterND), as
  transformers does, so compute follows the active parameters, not the total.
- `portable` flavour (TensorRT): TensorRT for RTX 1.7's parser has no NonZero (it wants a plugin), and
  nothing else selects a data-dependent set of rows, so every expert runs on every token and its output is
  weighted by the routing weight, zero for the tokens not routed to it. Exact, but the compute of all
  experts: a GPU runtime with its own MoE kernel is the fast path for the large models.
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from converters.nemotron_h_moe import MoEArgs
from converters.onnx_layers import Decoder

_ONE = numpy_helper.from_array(np.ones(1, np.float32))  # ConstantOfShape's fill value


def moe_block(d: Decoder, x: str, mixer: str, moe: MoEArgs, hidden: int) -> str:
    """The MoE mixer on `x` [batch, sequence, hidden], for checkpoint tensors under `mixer`."""
    with d.g.scope("moe"):
        g = d.g
        flat = g.op("Reshape", x, g.const([-1, hidden]))  # [tokens, hidden]
        weights = _routing(d, flat, mixer, moe)  # [tokens, experts]; 0 where an expert is not chosen
        routed = d.linear(flat, f"{mixer}.fc1_latent_proj.weight") if moe.latent_size else flat
        total = g.op("ConstantOfShape", g.op("Shape", routed))  # float32 zeros
        for e in range(moe.experts):
            column = g.op("Gather", weights, g.const(e), axis=1)  # [tokens]
            expert = f"{mixer}.experts.{e}"
            if d.weights.flavor == "portable":  # every token; adding 0 x a finite output changes nothing
                y = d.relu2_mlp(routed, f"{expert}.up_proj", f"{expert}.down_proj", False)
                total = g.op("Add", total, g.op("Mul", y, g.op("Unsqueeze", column, g.const([1]))))
                continue
            rows = g.op("Transpose", g.op("NonZero", g.op("Greater", column, g.const(0.0, np.float32))))  # [n, 1]
            index = g.op("Reshape", rows, g.const([-1]))
            y = d.relu2_mlp(g.op("Gather", routed, index, axis=0), f"{expert}.up_proj", f"{expert}.down_proj", False)
            y = g.op("Mul", y, g.op("Unsqueeze", g.op("Gather", column, index, axis=0), g.const([1])))
            # tokens are unique within one expert: add its rows to theirs, in expert order as transformers does
            total = g.op("ScatterND", total, rows, g.op("Add", g.op("Gather", total, index, axis=0), y))
        if moe.latent_size:
            total = d.linear(total, f"{mixer}.fc2_latent_proj.weight")
        shared = d.relu2_mlp(flat, f"{mixer}.shared_experts.up_proj", f"{mixer}.shared_experts.down_proj", False)
        return g.op("Reshape", g.op("Add", total, shared), g.op("Shape", x))


def _routing(d: Decoder, flat: str, mixer: str, moe: MoEArgs) -> str:
    """Each token's weight for each expert [tokens, experts]: sigmoid scores of the chosen top-k (chosen with
    the selection bias, within the best groups), normalised and scaled; zero for the others."""
    g = d.g
    # the router stays float32 in every weight type: its choices are discrete
    logits = g.op("Gemm", flat, d.weights.small(g, d.ckpt, f"{mixer}.gate.weight"), transB=1)
    scores = g.op("Sigmoid", logits)
    choice = g.op("Add", scores, d.weights.small(g, d.ckpt, f"{mixer}.gate.e_score_correction_bias"))
    if moe.limits_groups:
        grouped = g.op("Reshape", choice, g.const([-1, moe.n_group, moe.per_group]))
        best_two = g.op("TopK", grouped, g.const([2]), axis=-1, outputs=2)[0]
        group_scores = g.op("ReduceSum", best_two, g.const([-1]), keepdims=0)  # [tokens, groups]
        chosen = g.op("TopK", group_scores, g.const([moe.topk_group]), axis=-1, outputs=2)[1]
        # exactly topk_group groups, ties included, as transformers' scatter of the TopK indices
        marks = g.op("ScatterElements", g.op("ConstantOfShape", g.op("Shape", group_scores)), chosen,
                     g.op("ConstantOfShape", g.op("Shape", chosen), value=_ONE), axis=1)
        in_group = g.op("Unsqueeze", g.op("Greater", marks, g.const(0.0, np.float32)), g.const([-1]))
        in_group = g.op("Reshape", g.op("Expand", in_group, g.const([1, 1, moe.per_group])),
                        g.const([-1, moe.experts]))
        choice = g.op("Where", in_group, choice, g.const(-np.inf, np.float32))
    top = g.op("TopK", choice, g.const([moe.top_k]), axis=-1, outputs=2)[1]  # [tokens, k]
    chosen_scores = g.op("GatherElements", scores, top, axis=1)
    if moe.norm_topk_prob:
        total = g.op("ReduceSum", chosen_scores, g.const([-1]), keepdims=1)
        chosen_scores = g.op("Div", chosen_scores, g.op("Add", total, g.const(1e-20, np.float32)))
    chosen_scores = g.op("Mul", chosen_scores, g.const(moe.scaling, np.float32))
    zeros = g.op("ConstantOfShape", g.op("Shape", scores))
    return g.op("ScatterElements", zeros, top, chosen_scores, axis=1)
