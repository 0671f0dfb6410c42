from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fabstir.models import SamplingParams
from fabstir.models.sampling import build_sampler


@pytest.mark.parametrize(
    "wrong",
    [
        {"temperature": 2.5},
        {"temperature": -0.1},
        {"top_p": 0},
        {"min_p": 1.5},
        {"max_tokens": 0},
        {"presence_penalty": 3},
        {"seed": -1},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"logprobs": True},
    ],
)
def test_out_of_range_sampling_parameters_are_refused(wrong: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SamplingParams(**wrong)


def test_defaults_are_greedy() -> None:
    assert SamplingParams().temperature == 0


def test_plain_greedy_needs_no_sampler_chain_but_penalties_and_temperature_do() -> None:
    assert build_sampler(SamplingParams(), n_vocab=300, default_seed=1) is None
    for params in (SamplingParams(repeat_penalty=1.1), SamplingParams(temperature=0.5)):
        sampler = build_sampler(params, n_vocab=300, default_seed=1)
        assert sampler is not None
        sampler.close()
