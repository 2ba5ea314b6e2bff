"""Fuzzing the readers of files from strangers: config.json, safetensors headers, GGUF metadata, manifests
and package archives. Every input gives success or one of localai's own errors (one line for the user),
never another exception, and never more memory than a stated bound: each test runs with the process's
data segment limited to what it already uses plus `HEADROOM_MB`, so an allocation a file declares
raises MemoryError, which fails the test.

Bounded in time: a fixed number of examples each, no shrinking database written to disk.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters import architecture_for
from converters.checkpoint import Checkpoint, SafetensorsFile
from localai.errors import LocalAIError
from localai.package import Manifest

HEADROOM_MB = 512
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@contextlib.contextmanager
def memory_bound(headroom_mb: int = HEADROOM_MB) -> Iterator[None]:
    """Limit this process's data segment (heap and anonymous maps) to its current size plus `headroom_mb`."""
    status = Path("/proc/self/status").read_text().splitlines()
    used_kb = next(int(line.split()[1]) for line in status if line.startswith("VmData:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, ((used_kb << 10) + (headroom_mb << 20), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _accepted_or_refused(call: Any, *args: Any) -> None:
    """`call(*args)` succeeds or raises a LocalAIError; anything else (MemoryError included) fails."""
    with memory_bound(), contextlib.suppress(LocalAIError):
        call(*args)


# JSON values, including the shapes that broke readers: huge integers, NaN, deep nesting, long strings
_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                             inner, max_size=4),
                     max_leaves=12)
_NESTED = st.integers(min_value=1, max_value=200_000).map(lambda depth: "[" * depth + "]" * depth)


@pytest.fixture(scope="module")
def real_config(_small_checkpoint_master: Path) -> dict[str, Any]:
    return json.loads((_small_checkpoint_master / "config.json").read_text())


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(
    ["model_type", "hybrid_override_pattern", "layers_block_type", "num_hidden_layers", "hidden_size",
     "vocab_size", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "mamba_num_heads",
     "mamba_head_dim", "ssm_state_size", "n_groups", "conv_kernel", "layer_norm_epsilon", "rms_norm_eps",
     "max_position_embeddings", "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings",
     "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "num_nextn_predict_layers", "time_step_min",
     "routed_scaling_factor", "use_conv_bias", "chunk_size"]), _JSON, min_size=1, max_size=4))
def test_config_values(real_config, changes):
    def parse(config: dict[str, Any]) -> None:
        arch = architecture_for(config)
        arch.ModelArgs.from_config(config)
    _accepted_or_refused(parse, real_config | changes)


@FUZZ
@given(text=st.one_of(_NESTED, st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      _JSON.map(json.dumps)))
def test_config_files(tmp_path, text):
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    (folder / "config.json").write_text(text, encoding="latin-1")
    _accepted_or_refused(Checkpoint, folder)


_DTYPES = st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8", "Q4", ""])
_COUNTS = st.integers(min_value=-(2**64), max_value=2**64) | st.sampled_from([0, 1, 2, 4, 8, 10**30])
_ENTRY = st.fixed_dictionaries({"dtype": _DTYPES | _JSON, "shape": st.lists(_COUNTS, max_size=6) | _JSON,
                                "data_offsets": st.lists(_COUNTS, min_size=0, max_size=3) | _JSON})


@FUZZ
@given(header=st.dictionaries(st.text(max_size=12), _ENTRY | _JSON, max_size=6),
       declared=st.none() | st.integers(min_value=0, max_value=2**64 - 1), body=st.binary(max_size=256))
def test_safetensors_headers(tmp_path, header, declared, body):
    raw = json.dumps(header).encode()
    length = len(raw) if declared is None else declared
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", length) + raw + body)
    _accepted_or_refused(SafetensorsFile, path)


@pytest.fixture(scope="module")
def real_gguf(package) -> Path:
    return next(package("nemotron_h", "q8_0").glob("*.gguf"))


@FUZZ
@given(data=st.data())
def test_gguf_metadata(tmp_path, real_gguf, data):
    """A real tiny GGUF with bytes of its header and metadata overwritten, or cut short."""
    raw = bytearray(real_gguf.read_bytes())
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        at = data.draw(st.integers(min_value=4, max_value=min(len(raw), 4096) - 8))
        raw[at:at + 8] = data.draw(st.binary(min_size=8, max_size=8))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(min_value=0, max_value=len(raw)))]
    path = tmp_path / "model.gguf"
    path.write_bytes(bytes(raw))
    from localai.model import bare_gguf_package

    _accepted_or_refused(bare_gguf_package, path)


@pytest.fixture(scope="module")
def real_manifest(package) -> dict[str, Any]:
    return json.loads((package("nemotron_h", "q8_0") / "manifest.json").read_text())


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(
    ["schema_version", "name", "architecture", "artifacts", "context_length", "tokenizer", "chat_template",
     "thinking", "generation_defaults", "source", "converter", "graph", "parameters", "created"]),
    _JSON, min_size=1, max_size=4),
    artifact=st.none() | st.dictionaries(st.sampled_from(["path", "format", "quant", "bytes", "sha256", "extra"]),
                                         _JSON, max_size=6))
def test_manifests(real_manifest, changes, artifact):
    data = real_manifest | changes
    if artifact is not None:
        data["artifacts"] = [artifact]
    _accepted_or_refused(Manifest.from_dict, data)


_MEMBER_NAMES = st.sampled_from(["pkg/manifest.json", "pkg/model.gguf", "pkg", "pkg/../x", "/abs", "pkg/./m",
                                 "pkg/sub/file", "other/file", "pkg\\win", "pkg/" + "a" * 300]) | st.text(max_size=20)
_MEMBER_TYPES = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
                                 tarfile.CHRTYPE, tarfile.GNUTYPE_SPARSE])


@FUZZ
@given(members=st.lists(st.tuples(_MEMBER_NAMES, _MEMBER_TYPES, st.binary(max_size=64)), max_size=6),
       manifest=_JSON, cut=st.none() | st.integers(min_value=0, max_value=20_000))
def test_package_archives(tmp_path, isolated_store, members, manifest, cut):
    from localai.archive import import_

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        entries = [("pkg/manifest.json", tarfile.REGTYPE, json.dumps(manifest).encode()), *members]
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    raw = buffer.getvalue()
    path = tmp_path / "package.tar"
    path.write_bytes(raw if cut is None else raw[:cut])
    _accepted_or_refused(import_, path)
