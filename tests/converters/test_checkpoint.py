"""Reading checkpoints: dtypes, shards and their index, and refusing what cannot be read safely."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from converters.checkpoint import Checkpoint
from localai.errors import ConversionError


def _write(folder, tensors, name="model.safetensors"):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{}")
    save_file(tensors, str(folder / name))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_float_dtypes_load_exactly_as_float32(dtype, tmp_path):
    original = torch.randn(33, 17).to(dtype)
    _write(tmp_path / "ck", {"w": original, "v": torch.arange(5, dtype=torch.int64)})
    with Checkpoint(tmp_path / "ck") as ckpt:
        assert ckpt.shape("w") == (33, 17)
        loaded = ckpt.load("w")
        assert loaded.dtype == np.float32
        np.testing.assert_array_equal(loaded, original.float().numpy())
        np.testing.assert_array_equal(ckpt.load("v"), np.arange(5))
        ckpt.release("w")
        np.testing.assert_array_equal(ckpt.load("w"), original.float().numpy())


def test_sharded_checkpoint_with_index(tmp_path):
    folder = tmp_path / "ck"
    _write(folder, {"a": torch.ones(4)}, "model-00001-of-00002.safetensors")
    _write(folder, {"b": torch.zeros(2, 2)}, "model-00002-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with Checkpoint(folder) as ckpt:
        assert sorted(ckpt.tensors) == ["a", "b"]
        assert len(ckpt.weight_files) == 2
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ConversionError, match="missing: model-00002-of-00002"):
        Checkpoint(folder)


def test_index_naming_a_tensor_the_shards_lack(tmp_path):
    folder = tmp_path / "ck"
    _write(folder, {"a": torch.ones(4)})
    index = {"weight_map": {"a": "model.safetensors", "ghost": "model.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ConversionError, match="'ghost' listed in the index is missing"):
        Checkpoint(folder)


def test_header_lying_about_a_tensor_size(tmp_path):
    folder = tmp_path / "ck"
    _write(folder, {"w": torch.ones(4, 4)})
    path = folder / "model.safetensors"
    data = path.read_bytes()
    assert data.count(b'"shape":[4,4]') == 1
    path.write_bytes(data.replace(b'"shape":[4,4]', b'"shape":[4,5]'))
    with pytest.raises(ConversionError, match="does not match its shape"):
        Checkpoint(folder)


@pytest.mark.parametrize("entry", [
    {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]},
    {"dtype": "F32", "shape": [-2, 2], "data_offsets": [16, 0]},
    {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]},
    {"dtype": "F32", "shape": "12", "data_offsets": [0, 8]},
    {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 9]},
])
def test_malformed_header_entries_are_conversion_errors(tmp_path, entry):
    _write_raw(tmp_path, {"w": entry}, 16)
    with pytest.raises(ConversionError, match="malformed header entry"):
        Checkpoint(tmp_path)


def test_overlapping_tensors_and_deep_nesting_are_refused(tmp_path):
    _write_raw(tmp_path, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 16)
    with pytest.raises(ConversionError, match="overlap"):
        Checkpoint(tmp_path)
    header = b"[" * 100000 + b"]" * 100000
    (tmp_path / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(ConversionError, match="corrupt safetensors header"):
        Checkpoint(tmp_path)


def _write_raw(folder, header, data_bytes):
    (folder / "config.json").write_text("{}")
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(data_bytes))
