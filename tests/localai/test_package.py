"""Packages are written whole or not at all."""

from __future__ import annotations

import json
import os

import pytest

from localai.errors import PackageError
from localai.package import Artifact, Manifest, Package, staged_directory, write_manifest


def _manifest() -> Manifest:
    return Manifest(name="m", architecture="llama", artifacts=[Artifact("m.gguf", "gguf", "f16", 3, "ab" * 32)],
                    context_length=128)


def test_failure_inside_the_staging_block_leaves_nothing(tmp_path):
    target = tmp_path / "store" / "pkg"
    with pytest.raises(RuntimeError), staged_directory(target) as staging:
        (staging / "half-written").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list((tmp_path / "store").iterdir()) == []


def test_success_renames_into_place_and_replace_swaps(tmp_path):
    target = tmp_path / "pkg"
    with staged_directory(target) as staging:
        write_manifest(staging, _manifest())
    assert Package.open(target).manifest.name == "m"
    with pytest.raises(PackageError, match="already exists"), staged_directory(target):
        pass
    with staged_directory(target, replace=True) as staging:
        (staging / "new").write_text("2")
    assert sorted(os.listdir(target)) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]


def test_staging_left_by_a_dead_process_is_removed(tmp_path):
    dead = tmp_path / ".pkg.partial-999999999-abcd"
    dead.mkdir()
    live = tmp_path / f".other.partial-{os.getpid()}-abcd"
    live.mkdir()
    with staged_directory(tmp_path / "pkg"):
        pass
    assert not dead.exists() and live.exists()


def test_manifest_round_trip_and_schema_check(tmp_path):
    manifest = _manifest()
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    (tmp_path / "manifest.json").write_text(json.dumps(manifest.to_dict() | {"schema_version": 99}))
    with pytest.raises(PackageError, match="schema_version 99"):
        Package.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(PackageError, match="malformed manifest"):
        Package.open(tmp_path)


def test_a_package_written_meanwhile_by_another_process_is_not_overwritten(tmp_path):
    target = tmp_path / "pkg"
    with pytest.raises(PackageError, match="already exists"), staged_directory(target) as first:
        (first / "mine").write_text("1")
        with staged_directory(target) as second:  # finishes first
            write_manifest(second, _manifest())
    assert Package.open(target).manifest.name == "m"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
