"""Nemotron-H configs in both layouts, and what the plan does with optional tensors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters import nemotron_h
from converters.tensors import shape_only
from localai.demo_model import nemotron_h_config
from localai.errors import ConversionError


def test_transformers5_config_is_dense_despite_moe_defaults(checkpoint):
    config = json.loads((checkpoint("nemotron_h") / "config.json").read_text())
    assert "num_experts_per_tok" in config and "hybrid_override_pattern" not in config  # 5.x writes MoE defaults
    args = nemotron_h.ModelArgs.from_config(config)
    assert args.layers == "M-*M-M"
    assert (args.n_groups, args.num_key_value_heads, args.use_conv_bias) == (2, 2, True)


def test_legacy_config_keys(checkpoint):
    config = json.loads((checkpoint("nemotron_h_legacy") / "config.json").read_text())
    assert "mamba_n_groups" in config and "layers_block_type" not in config
    args = nemotron_h.ModelArgs.from_config(config)
    assert args.layers == "M*-M-"
    assert (args.n_groups, args.use_conv_bias, args.tie_word_embeddings) == (1, False, True)


@pytest.mark.parametrize(("change", "message"), [
    ({"num_hidden_layers": 3}, "num_hidden_layers=3"),
    ({"hybrid_override_pattern": "M*X"}, "unknown layer kinds"),
    ({"hybrid_override_pattern": None, "layers_block_type": ["mamba", "conv"]}, "unknown layers_block_type"),
    ({"mlp_hidden_act": "gelu"}, "mlp_hidden_act"),
    ({"n_groups": 3}, "not divisible by n_groups"),
    ({"hidden_size": "big"}, "'hidden_size' must be an integer"),
])
def test_invalid_configs_are_refused(change, message):
    config = nemotron_h_config(512) | change
    with pytest.raises(ConversionError, match=message):
        nemotron_h.ModelArgs.from_config(config)


def test_missing_conv_bias_becomes_zeros_and_a_is_negated_exp():
    args = nemotron_h.ModelArgs.from_config(nemotron_h_config(512, use_conv_bias=False))
    plan = {t.name: t for t in nemotron_h.tensor_plan(args, set())}
    bias = plan["blk.0.ssm_conv1d.bias"]
    assert bias.sources == {}
    np.testing.assert_array_equal(bias.build(lambda n: None), np.zeros(args.conv_dim, np.float32))
    a_log = np.log(np.arange(1, args.mamba_num_heads + 1, dtype=np.float32))
    a = plan["blk.0.ssm_a"].build(lambda n: a_log)
    np.testing.assert_allclose(a[:, 0], -np.arange(1, args.mamba_num_heads + 1))
    norm = plan["blk.0.ssm_norm.weight"].build(lambda n: shape_only((args.d_inner,)))
    assert norm.shape == (args.n_groups, args.d_inner // args.n_groups)
    assert "output.weight" in plan  # untied head
