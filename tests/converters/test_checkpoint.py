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


def test_a_huge_shape_is_a_mismatch_not_an_overflow(tmp_path):
    _write_raw(tmp_path, {"w": {"dtype": "F32", "shape": [10**30], "data_offsets": [0, 8]}}, 16)
    with pytest.raises(ConversionError, match="does not match its shape"):
        Checkpoint(tmp_path)
    _write_raw(tmp_path, {"w": {"dtype": "F32", "shape": [1] * 100, "data_offsets": [0, 4]}}, 16)
    with pytest.raises(ConversionError, match="malformed header entry"):
        Checkpoint(tmp_path)


@pytest.mark.parametrize("shard", ["/etc/passwd", "../outside.safetensors", "sub/model.safetensors", "..",
                                   "model.bin"])
def test_index_shards_are_plain_file_names_in_the_folder(tmp_path, shard):
    folder = tmp_path / "ck"
    _write(folder, {"a": torch.ones(4)})
    (tmp_path / "outside.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": shard}}))
    with pytest.raises(ConversionError, match=r"shards are \*\.safetensors files in the checkpoint's folder"):
        Checkpoint(folder)


def test_a_file_that_is_not_safetensors_is_named_without_its_bytes(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(ConversionError) as error:
        Checkpoint(tmp_path)
    assert str(error.value).startswith("model.safetensors is not a safetensors file")
    assert not any(ch.isdigit() for ch in str(error.value))


def test_a_fifo_is_refused_instead_of_read(tmp_path):
    import os

    (tmp_path / "config.json").write_text("{}")
    os.mkfifo(tmp_path / "model.safetensors")
    with pytest.raises(ConversionError, match=r"model\.safetensors in .* is not a regular file"):
        Checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "config.json").unlink()
    os.mkfifo(tmp_path / "config.json")
    with pytest.raises(ConversionError, match=r"config\.json is not a regular file"):
        Checkpoint(tmp_path)


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a": ' + "1" * 5000 + "}", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_config_json_that_breaks_the_parser_is_one_error(tmp_path, text, message):
    _write(tmp_path, {"a": torch.ones(4)})
    path = tmp_path / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConversionError, match=message):
        Checkpoint(tmp_path)
