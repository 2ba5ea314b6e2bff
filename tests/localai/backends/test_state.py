"""Backend state snapshots (save_state / load_state): restoring one and continuing is exactly the same
as processing the whole sequence from scratch, on hybrid and dense models, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

import localai
from localai.errors import BackendError
from tests import zoo

CASES = [("gguf", "nemotron_h"), ("gguf", "llama"), ("onnx", "nemotron_h"), ("onnx", "llama")]
TOLERANCE = {"gguf": 1e-3, "onnx": 1e-4}


def _load(fmt, name, package, onnx_package):
    folder = package(name, "f32") if fmt == "gguf" else onnx_package(name, "fp32")
    return localai.load(folder, n_ctx=256)


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_restored_state_continues_like_a_fresh_run(fmt, name, package, onnx_package):
    model = _load(fmt, name, package, onnx_package)
    backend = model.backend
    prompt, detour, turn = (zoo.random_tokens(n, 400, seed=s) for n, s in ((30, 1), (25, 2), (12, 3)))
    backend.reset()
    backend.eval(prompt)
    snapshot = backend.save_state()
    assert snapshot.n_past == 30 and snapshot.nbytes > 0
    backend.eval(detour)  # an answer that is then dropped, as regenerate does
    backend.load_state(snapshot)
    assert backend.n_past == 30
    continued = [backend.eval(turn[:5])] + [backend.eval([t]) for t in turn[5:]]
    expected = backend.logits(prompt + turn)[29 + 5 :]
    model.close()
    assert np.abs(np.stack(continued) - expected).max() <= TOLERANCE[fmt]


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_snapshots_restore_in_any_order(fmt, name, package, onnx_package):
    """Going back to an earlier snapshot, writing another continuation over the positions a later
    snapshot also holds, then returning to that later one (a chat's edited turn, then the original
    again): the later snapshot's positions come back too. The ort flavour's K/V buffers are written in
    place, so this is what its snapshots must copy."""
    model = _load(fmt, name, package, onnx_package)
    backend = model.backend
    first, second, other, turn = (zoo.random_tokens(n, 400, seed=s) for n, s in ((20, 1), (15, 2), (25, 3), (6, 4)))
    backend.reset()
    backend.eval(first)
    early = backend.save_state()
    backend.eval(second)
    late = backend.save_state()
    backend.load_state(early)
    backend.eval(other)  # overwrites positions 20-44, where `late` had `second`
    backend.load_state(late)
    continued = np.stack([backend.eval([t]) for t in turn])
    expected = backend.logits(first + second + turn)[len(first + second) :]
    model.close()
    assert np.abs(continued - expected).max() <= TOLERANCE[fmt]


@pytest.mark.parametrize("fmt", ["gguf", "onnx"])
def test_snapshot_size_grows_with_tokens_only_through_attention(fmt, package, onnx_package):
    """Mamba2 conv/SSM states have a fixed size; attention KV grows with the tokens."""
    model = _load(fmt, "nemotron_h", package, onnx_package)
    backend = model.backend
    backend.reset()
    backend.eval(zoo.random_tokens(10, 400))
    small = backend.save_state().nbytes
    backend.eval(zoo.random_tokens(40, 400, seed=5))
    large = backend.save_state().nbytes
    model.close()
    assert large > small


def test_a_state_from_another_backend_is_refused(package, onnx_package):
    gguf = _load("gguf", "llama", package, onnx_package)
    onnx = _load("onnx", "llama", package, onnx_package)
    gguf.backend.eval([1, 2, 3])
    with pytest.raises(BackendError, match="not taken by this ONNX Runtime model"):
        onnx.backend.load_state(gguf.backend.save_state())
    gguf.close()
    onnx.close()
