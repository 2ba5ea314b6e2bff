"""localai.quality: the perplexity / KL arithmetic, and real conversions measured against their reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

import localai
from localai.errors import LocalAIError
from localai.quality import TransformersReference, chunks, default_text, evaluate, kl_divergence


def test_kl_divergence_by_hand():
    p = np.log(np.array([[0.5, 0.5]]))
    q = np.log(np.array([[0.9, 0.1]]))
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl_divergence(p, q)[0] == pytest.approx(expected, rel=1e-12)
    assert kl_divergence(q + 3.0, q)[0] == pytest.approx(0.0, abs=1e-15)  # logits, not probabilities


def test_chunks_put_bos_first_and_drop_the_tail():
    tokens = list(range(10, 30))  # 20 tokens
    assert chunks(tokens, 8, bos=1) == [[1, *range(10, 17)], [1, *range(17, 24)]]
    assert chunks(tokens, 8, bos=None) == [list(range(10, 18)), list(range(18, 26))]
    assert chunks(tokens[:5], 8, bos=None) == [tokens[:5]]  # shorter than one chunk: all of it
    with pytest.raises(LocalAIError, match="too small"):
        chunks(tokens, 2, bos=1)
    with pytest.raises(LocalAIError, match="at least 4"):
        chunks(tokens[:3], 8, bos=None)


def test_uniform_predictions_have_the_vocabulary_as_perplexity():
    report = evaluate(lambda toks: np.zeros((len(toks), 50), np.float32), list(range(40)), ctx=16, bos=None)
    assert report.perplexity == pytest.approx(50.0, rel=1e-12)
    assert (report.chunks, report.scored) == (2, 2 * 7)  # 16-token chunks: predictions 8..14 of each


def test_perplexity_is_that_of_the_scored_second_halves():
    """Probability 1/2 on the right next token in each chunk's second half, 1/4 in its first half: only
    the second half counts, so perplexity is 2 (scoring the first half too would give more)."""
    tokens = np.random.default_rng(0).integers(0, 8, 64).tolist()

    def scorer(chunk):
        logits = np.full((len(chunk), 8), -1e9, np.float32)
        for i, nxt in enumerate(chunk[1:]):
            rivals = 1 if i >= len(chunk) // 2 else 3
            for k in range(rivals + 1):
                logits[i, (nxt + k) % 8] = 0.0
        return logits

    assert evaluate(scorer, tokens, ctx=32, bos=None).perplexity == pytest.approx(2.0, rel=1e-9)


def test_non_finite_logits_are_an_error():
    with pytest.raises(LocalAIError, match="non-finite"):
        evaluate(lambda toks: np.full((len(toks), 5), np.nan, np.float32), list(range(20)), ctx=8, bos=None)


def test_the_default_text_is_shipped():
    assert "Four score and seven years ago" in default_text()


def _report(model_path, reference):
    model = localai.load(model_path, n_ctx=256)
    try:
        tokens = model.backend.tokenize(default_text(), add_bos=False, special=False)
        return evaluate(model.backend.logits, tokens, ctx=256, bos=model.bos_id, reference=reference)
    finally:
        model.close()


def test_a_model_against_itself_differs_by_nothing(package):
    reference = localai.load(package("nemotron_h", "f32"), n_ctx=256)
    report = _report(package("nemotron_h", "f32"), reference.backend.logits)
    reference.close()
    assert report.kl_mean == 0.0 and report.kl_max == 0.0
    assert report.max_abs_logit_diff == 0.0 and report.top1_agreement == 1.0
    assert report.perplexity == report.reference_perplexity
    assert report.scored > 500


def test_f16_is_close_to_f32_and_q4_further(package):
    reference = localai.load(package("nemotron_h", "f32"), n_ctx=256)
    f16 = _report(package("nemotron_h", "f16"), reference.backend.logits)
    q4 = _report(package("nemotron_h", "q4_k_m"), reference.backend.logits)
    reference.close()
    assert 0 < f16.kl_mean < 1e-4 and f16.top1_agreement >= 0.97
    assert q4.kl_mean > 10 * f16.kl_mean and q4.kl_mean < 5e-2
    assert q4.max_abs_logit_diff > f16.max_abs_logit_diff


def test_f32_package_against_its_transformers_checkpoint(package, checkpoint):
    report = _report(package("nemotron_h", "f32"), TransformersReference(checkpoint("nemotron_h")))
    assert report.max_abs_logit_diff <= 1e-3 and report.kl_mean < 1e-6 and report.top1_agreement == 1.0
    assert report.perplexity == pytest.approx(report.reference_perplexity, rel=1e-4)
