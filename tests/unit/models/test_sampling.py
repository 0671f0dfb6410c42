from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fabstir.models import SamplingParams


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
