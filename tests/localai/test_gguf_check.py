"""Bare GGUF files with values that kill llama.cpp (SIGABRT, SIGSEGV) or trip gguf-py are refused in one line.

Each hostile file is a real tiny package's GGUF rewritten with one key changed (or one tensor left out), or a
header written by hand; `localai run FILE.gguf` must then fail with exit code 1 and one "error: " line.
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import gguf
import pytest

from localai.errors import PackageError
from localai.gguf_check import check_gguf
from tests import zoo


@pytest.fixture(scope="module")
def nemotron_gguf(package) -> Path:
    return next(package("nemotron_h", "q8_0").glob("*.gguf"))


@pytest.fixture(scope="module")
def moe_gguf(package) -> Path:
    return next(package("nemotron3_moe", "q8_0").glob("*.gguf"))


def _tokens_with_a_duplicate(source: Path) -> list[str]:
    tokens = gguf.GGUFReader(source).fields["tokenizer.ggml.tokens"].contents()
    return [tokens[0], *tokens[:-1]]


NEMOTRON = "nemotron_h"
# (source, changes, tensors left out, what the error names); every one but the BOS id kills llama.cpp
HOSTILE = {
    "layers": (NEMOTRON, {"nemotron_h.block_count": 10**6}, (), "nemotron_h.block_count is 1000000; llama.cpp "
                                                                  "loads 1 to 512 layers"),
    "duplicate tokens": (NEMOTRON, {"tokenizer.ggml.tokens": _tokens_with_a_duplicate}, (),
                         "tokenizer.ggml.tokens holds '<unk>' twice (ids 0 and 1)"),
    "NaN epsilon": (NEMOTRON, {"nemotron_h.attention.layer_norm_rms_epsilon": math.nan}, (),
                    "nemotron_h.attention.layer_norm_rms_epsilon is nan; a norm epsilon must be finite and positive"),
    "negative epsilon": (NEMOTRON, {"nemotron_h.attention.layer_norm_rms_epsilon": -1.0}, (),
                         "nemotron_h.attention.layer_norm_rms_epsilon is -1.0"),
    "unknown RoPE scaling": (NEMOTRON, {"nemotron_h.rope.scaling.type": "bogus"}, (),
                             "nemotron_h.rope.scaling.type is 'bogus'"),
    "no conv1d bias": (NEMOTRON, {}, ("blk.3.ssm_conv1d.bias",), "nemotron_h tensor blk.3.ssm_conv1d.bias is missing"),
    "no experts used": ("moe", {"nemotron_h_moe.expert_used_count": 0}, (),
                        "nemotron_h_moe.expert_used_count is 0; with 8 experts it must be 1 to 8"),
    "BOS out of range": (NEMOTRON, {"tokenizer.ggml.bos_token_id": 10**6}, (),
                         "tokenizer.ggml.bos_token_id is 1000000, outside the vocabulary of 512 tokens"),
}
KILLS_LLAMA_CPP = [case for case in HOSTILE if case != "BOS out of range"]  # that one is silently replaced


@pytest.fixture
def hostile(request, nemotron_gguf, tmp_path) -> Any:
    """hostile(case) -> the bare GGUF of that HOSTILE case, and the fragment its error must hold."""
    def build(case: str) -> tuple[Path, str]:
        source_name, changes, drop, fragment = HOSTILE[case]
        source = nemotron_gguf if source_name == NEMOTRON else request.getfixturevalue("moe_gguf")
        changes = {key: value(source) if callable(value) else value for key, value in changes.items()}
        return zoo.rewrite_gguf(source, tmp_path / "model.gguf", changes, drop), fragment

    return build


def _assert_one_line(result: Any, fragment: str) -> None:
    assert result.code == 1, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unexpected" not in lines[0], result.err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_value_is_one_line(cli, hostile, case):
    path, fragment = hostile(case)
    _assert_one_line(cli("run", str(path), "--prompt", "hi", "--max-tokens", "2"), f"error: model.gguf: {fragment}")


_LOAD_AND_DECODE = """
import sys, llama_cpp
llm = llama_cpp.Llama(sys.argv[1], n_ctx=256, n_batch=64, n_threads=1, verbose=False)
llm.eval(llm.tokenize(b"hi there", add_bos=True, special=True))
"""


@pytest.mark.parametrize("case", KILLS_LLAMA_CPP)
def test_each_refused_value_does_kill_llama_cpp(hostile, case):
    """Why the checks exist: llama.cpp itself, given the file, ends the process by a signal (SIGABRT from an
    assert, SIGSEGV for the missing bias) rather than raising. Should this fail after an upgrade, llama.cpp
    now copes, and the check may go."""
    path, _ = hostile(case)
    result = subprocess.run([sys.executable, "-c", _LOAD_AND_DECODE, str(path)], capture_output=True, timeout=120)
    assert result.returncode < 0, (result.returncode, result.stderr[-500:])


def test_an_unchanged_copy_is_accepted_and_runs(cli, nemotron_gguf, tmp_path):
    path = zoo.rewrite_gguf(nemotron_gguf, tmp_path / "model.gguf", {})
    result = cli("run", str(path), "--prompt", "hi", "--max-tokens", "2")
    assert result.code == 0, result.err


@pytest.mark.parametrize("name", ["nemotron_h", "nemotron3_moe", "nemotron3_mtp", "llama", "qwen3"])
def test_what_localai_converts_passes_the_check(package, name):
    check_gguf(next(package(name, "q8_0").glob("*.gguf")))


def _header(n_tensors: int, n_kv: int, rest: bytes = b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + rest


def _kv(key: bytes, value_type: int, value: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key + struct.pack("<I", value_type) + value


@pytest.mark.parametrize(("raw", "fragment"), [
    (_header(2**60, 0, bytes(64)), "its header declares 1152921504606846976 tensors (at most 1000000)"),
    (_header(0, 2**60, bytes(64)), "its header declares 1152921504606846976 metadata keys (at most 100000)"),
    (_header(1000, 0, bytes(64)), "declares 1000 tensors, more than its 64 bytes can hold"),
    # gguf-py loops forever on this one: past the end of the file each element reads as nothing
    (_header(0, 1, _kv(b"general.x", 9, struct.pack("<IQ", 0, 2**60)) + bytes(16)),
     "'general.x' declares 1152921504606846976 elements"),
    (_header(0, 1, _kv(b"general.name", 8, struct.pack("<Q", 2**60) + b"abc")),
     "'general.name' declares 1152921504606846976 bytes, the file has 3 left"),
    (_header(0, 1, struct.pack("<Q", 2**60) + b"abc"), "declares 1 metadata keys, more than its 11 bytes can hold"),
    (_header(0, 1, _kv(b"general.x", 99, b"\0")), "'general.x' has unknown value type 99"),
    (_header(1, 0, struct.pack("<Q", 1) + b"t" + struct.pack("<I", 2**31) + bytes(40)),
     "tensor 't' declares 2147483648 dimensions (at most 4)"),
    (_header(0, 1, _kv(b"\xff\xfe", 0, b"\1") + bytes(16)), "can't decode byte 0xff"),  # from gguf-py
    (b"GGUF", "it has 4 bytes, fewer than a GGUF header"),
    (b"GGML" + bytes(40), "it does not start with the GGUF magic"),
])
def test_a_hostile_header_is_one_line(cli, tmp_path, raw, fragment):
    path = tmp_path / "model.gguf"
    path.write_bytes(raw)
    result = cli("run", str(path), "--prompt", "hi", "--max-tokens", "2")
    _assert_one_line(result, "error: model.gguf is not a readable GGUF file: ")
    assert fragment in result.err


def test_a_bos_token_that_is_not_utf8_does_not_break_the_manifest(nemotron_gguf, tmp_path):
    path = Path(shutil.copy(nemotron_gguf, tmp_path / "model.gguf"))
    reader = gguf.GGUFReader(path)
    tokens = reader.fields["tokenizer.ggml.tokens"]
    text = tokens.parts[tokens.data[reader.fields["tokenizer.ggml.bos_token_id"].contents()]]
    at = text.__array_interface__["data"][0] - reader.data.__array_interface__["data"][0]
    del reader, tokens, text
    raw = bytearray(path.read_bytes())
    raw[at] = 0xFF  # same length, no longer UTF-8
    path.write_bytes(raw)
    from localai.model import bare_gguf_package

    assert bare_gguf_package(path).manifest.tokenizer["bos_token"].startswith("\ufffd")


def test_check_gguf_refuses_with_a_package_error(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(PackageError, match=r"empty\.gguf is not a readable GGUF file: it has 0 bytes"):
        check_gguf(path)
