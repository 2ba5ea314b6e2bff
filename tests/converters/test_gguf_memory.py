"""GGUF conversion memory: a MoE layer's experts are stacked into one tensor as they are written, one expert
at a time, so peak RSS does not grow with the number of experts."""

from __future__ import annotations

from localai.demo_model import write_random_nemotron_h
from tests.conftest import convert_peak_rss_mb

# 2 MoE layers; each expert is 2 x 256 x 1024 float32 (2 MiB): one layer's up or down stack is 8 MiB with
# 8 experts, 96 MiB with 96
MOE = {"hidden_size": 256, "hybrid_override_pattern": "ME*E", "n_routed_experts": 8, "num_experts_per_tok": 2,
       "moe_intermediate_size": 1024, "moe_shared_expert_intermediate_size": 256, "n_group": 1, "topk_group": 1,
       "mamba_num_heads": 8, "mamba_head_dim": 32, "ssm_state_size": 32, "head_dim": 64}


def test_peak_memory_does_not_grow_with_the_number_of_experts(tmp_path):
    few = write_random_nemotron_h(tmp_path / "few", **MOE)
    many = write_random_nemotron_h(tmp_path / "many", **(MOE | {"n_routed_experts": 96}))
    size = {f: (f / "model.safetensors").stat().st_size / 2**20 for f in (few, many)}
    assert size[many] - size[few] > 300  # 2 layers x 88 more experts x 2 MiB
    for quant in ("f16", "q8_0"):
        peaks = [convert_peak_rss_mb(f, tmp_path / f"{f.name}-{quant}", quant=quant) for f in (few, many)]
        # one stacked tensor materialised would add 88 MiB; the whole model, 350
        assert peaks[1] - peaks[0] < 24, (quant, peaks, size)
