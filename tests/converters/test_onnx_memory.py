"""ONNX export memory: about one tensor at a time, so peak RSS does not grow with the model's size."""

from __future__ import annotations

import subprocess
import sys

from localai.demo_model import write_random_nemotron_h

CONVERT = """
import resource, sys
from pathlib import Path
from converters import convert
convert(sys.argv[1], to="onnx", quant=sys.argv[2], output=Path(sys.argv[3]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_mb(folder, quant, out) -> float:
    result = subprocess.run([sys.executable, "-c", CONVERT, str(folder), quant, str(out)], capture_output=True,
                            text=True, check=True)
    return int(result.stdout.split()[-1]) / 1024


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
