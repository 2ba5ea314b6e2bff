"""localai.hub and `localai pull`: checkpoints from a pre-filled Hugging Face cache, with no network."""

from __future__ import annotations

import json
import shutil

import pytest

from localai import hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, small_checkpoint):
    """A Hugging Face cache holding `acme/tiny` at COMMIT (its `main`), as the hub client lays it out."""
    cache = tmp_path / "hf-cache"
    repo = cache / "models--acme--tiny"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(small_checkpoint, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    return snapshot


def test_pull_from_the_cache_pins_the_commit(cli, hf_cache):
    result = cli("pull", "acme/tiny", "--offline", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["revision"] == COMMIT and report["path"] == str(hf_cache)
    assert "config.json" in report["files"] and "model.safetensors" in report["files"]
    assert cli("pull", f"acme/tiny@{COMMIT}").code == 0


def test_convert_takes_a_repo_id_through_the_same_code(cli, hf_cache):
    result = cli("convert", "acme/tiny", "--json")  # the test environment sets HF_HUB_OFFLINE=1
    assert result.code == 0, result.err
    source = json.loads(result.out)["manifest"]["source"]
    assert source["kind"] == "huggingface" and source["repo_id"] == "acme/tiny" and source["revision"] == COMMIT


def test_offline_names_the_missing_files(cli, hf_cache):
    (hf_cache / "tokenizer.json").unlink()
    result = cli("pull", "acme/tiny", "--offline")
    assert result.code == 1 and "the local Hugging Face cache lacks tokenizer.json" in result.err


def test_missing_shards_are_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"")
    assert hub.missing_files(tmp_path) == ["model-00002-of-00002.safetensors"]
    (tmp_path / "model.safetensors.index.json").unlink()
    assert hub.missing_files(tmp_path)[0].startswith("model.safetensors (safetensors weights only")


def test_a_repo_that_is_not_cached(cli, hf_cache):
    result = cli("pull", "acme/other", "--offline")
    assert result.code == 1 and "not in the local Hugging Face cache" in result.err


@pytest.mark.parametrize("spec", ["tiny", "acme/tiny/extra", "../acme/tiny", "acme/ti ny"])
def test_bad_repo_ids(cli, spec):
    result = cli("pull", spec)
    assert result.code == 1 and "is not a Hugging Face repo id" in result.err


def test_only_config_tokenizer_and_safetensors_are_ever_requested():
    """The allow-list handed to the hub client, applied by the client's own filter to a repo listing."""
    from huggingface_hub.utils import filter_repo_objects

    listing = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja", "model.safetensors",
               "model-00001-of-00002.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "model.pt",
               "modeling_custom.py",
               "configuration_custom.py", "onnx/model.safetensors", "original/consolidated.safetensors",
               "consolidated.safetensors", "tokenizer.model.v3", "weights.pkl"]
    fetched = set(filter_repo_objects(listing, allow_patterns=hub.ALLOW_PATTERNS))
    assert fetched == {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                       "special_tokens_map.json", "chat_template.jinja", "model.safetensors",
                       "model-00001-of-00002.safetensors", "model.safetensors.index.json"}
