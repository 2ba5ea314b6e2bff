"""ONNX export memory: about one tensor at a time, so peak RSS does not grow with the model's size."""

from __future__ import annotations

from localai.demo_model import write_random_nemotron_h
from tests.conftest import convert_peak_rss_mb


def _peak_rss_mb(folder, quant, out) -> float:
    return convert_peak_rss_mb(folder, out, to="onnx", quant=quant)


def test_peak_memory_does_not_grow_with_the_number_of_layers(tmp_path):
    # same tensor sizes, 4x the layers: about 25 MB vs 100 MB of float32 weights
    layer = {"hidden_size": 512, "intermediate_size": 2048, "mamba_head_dim": 128}
    small = write_random_nemotron_h(tmp_path / "small", hybrid_override_pattern="M*-M", **layer)
    large = write_random_nemotron_h(tmp_path / "large", hybrid_override_pattern="M*-M" * 4, **layer)
    size = {f: (f / "model.safetensors").stat().st_size / 2**20 for f in (small, large)}
    for quant in ("fp32", "int4"):
        grown = _peak_rss_mb(large, quant, tmp_path / f"large-{quant}") - _peak_rss_mb(small, quant,
                                                                                      tmp_path / f"small-{quant}")
        assert grown < (size[large] - size[small]) / 4, (quant, grown, size)
