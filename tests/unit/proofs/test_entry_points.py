"""Wrong values at the proof subsystem's outside entry points are refused with a clear error."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from benchmarks import proofs as proofs_benchmark
from fabstir.settings import ProverSettings


@pytest.mark.parametrize(
    "changes", [{"spot_check_rate": -0.01}, {"spot_check_rate": 1.5}, {"spot_check_seed": ""}]
)
def test_spot_check_settings_out_of_range_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ProverSettings(**changes)


def test_the_benchmark_refuses_fewer_than_one_repeat(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["benchmarks.proofs", "--repeats", "0"])
    with pytest.raises(SystemExit) as exited:
        proofs_benchmark.main()
    assert exited.value.code == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
