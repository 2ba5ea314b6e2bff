from __future__ import annotations

import numpy as np
import pytest

from localai.sampling import Sampler, SamplingParams

LOGITS = np.array([0.1, 2.0, -1.0, 1.9, 0.5], dtype=np.float32)


def test_greedy_and_filters_that_leave_one_candidate_pick_the_argmax():
    assert Sampler(SamplingParams())(LOGITS) == 1
    assert {Sampler(SamplingParams(temperature=1.0, top_k=1, seed=s))(LOGITS) for s in range(20)} == {1}
    assert {Sampler(SamplingParams(temperature=1.0, top_p=0.01, seed=s))(LOGITS) for s in range(20)} == {1}


def test_seeded_sampling_repeats_and_top_k_limits_the_choice():
    draws = [Sampler(SamplingParams(temperature=2.0, seed=7))(LOGITS) for _ in range(3)]
    assert len(set(draws)) == 1
    sampler = Sampler(SamplingParams(temperature=5.0, top_k=2, seed=0))
    assert {sampler(LOGITS) for _ in range(200)} == {1, 3}


@pytest.mark.parametrize("bad", [{"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -2}])
def test_invalid_parameters(bad):
    with pytest.raises(ValueError):
        SamplingParams(**bad)
