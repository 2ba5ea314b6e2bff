"""Converted GGUFs run by llama.cpp against transformers in float32 (the reference implementation).

Logits are compared over 80 tokens, as one sequence and incrementally (a prefill, then one token at a
time); the Nemotron-H checkpoints use a Mamba2 chunk size of 16, so both paths cross chunk boundaries.
"""

from __future__ import annotations

import numpy as np
import pytest

import localai
from tests import zoo

MODELS = ["nemotron_h", "nemotron_h_legacy", "llama", "mistral", "qwen3", "qwen2"]
N_TOKENS, PREFILL = 80, 24
TOLERANCE = {"f32": 1e-3, "f16": 5e-3}


def _model_tokens_and_reference(name, quant, package, checkpoint, reference):
    model = localai.load(package(name, quant), n_ctx=256)
    tokens = zoo.random_tokens(N_TOKENS, model.manifest.tokenizer["size"], seed=1)
    return model, tokens, zoo.reference_logits(reference(checkpoint(name)), tokens)


@pytest.mark.parametrize("quant", ["f32", "f16"])
@pytest.mark.parametrize("name", MODELS)
def test_full_sequence_logits_match_transformers(name, quant, package, checkpoint, reference):
    model, tokens, expected = _model_tokens_and_reference(name, quant, package, checkpoint, reference)
    got = model.backend.logits(tokens)
    model.close()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOLERANCE[quant]


@pytest.mark.parametrize("quant", ["f32", "f16"])
@pytest.mark.parametrize("name", MODELS)
def test_incremental_logits_match_transformers(name, quant, package, checkpoint, reference):
    model, tokens, expected = _model_tokens_and_reference(name, quant, package, checkpoint, reference)
    backend = model.backend
    backend.reset()
    steps = [backend.eval(tokens[:PREFILL])]
    steps += [backend.eval([t]) for t in tokens[PREFILL:]]
    model.close()
    got = np.stack(steps)
    assert backend.n_past == N_TOKENS
    assert np.abs(got - expected[PREFILL - 1 :]).max() <= TOLERANCE[quant]


# Bounds measured on these checkpoints (see docs/gguf-conversion.md), with head-room; random weights
# quantize worse than trained ones, so these are regression bounds, not quality claims.
KL_BOUND = {"q8_0": 1e-3, "q4_k_m": 5e-2}


@pytest.mark.parametrize("name", ["nemotron_h", "llama"])
def test_quantized_kl_divergence_is_bounded(name, package, checkpoint, reference):
    tokens = zoo.random_tokens(N_TOKENS, 500, seed=2)
    expected = zoo.reference_logits(reference(checkpoint(name)), tokens)
    kl = {}
    for quant in ("f16", "q8_0", "q4_k_m"):
        model = localai.load(package(name, quant), n_ctx=256)
        kl[quant] = zoo.mean_kl(expected, model.backend.logits(tokens))
        model.close()
    assert kl["q8_0"] <= KL_BOUND["q8_0"]
    assert kl["q4_k_m"] <= KL_BOUND["q4_k_m"]
    assert kl["f16"] < kl["q8_0"] < kl["q4_k_m"], kl
