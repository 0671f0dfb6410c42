"""Stored spot-check outcomes read back for the QA report's pass rate."""

from __future__ import annotations

import pytest

from fabstir.spotcheck import (
    SpotCheck,
    SpotCheckStatus,
    read_spot_checks,
    select_for_spot_check,
    spot_check_key,
)
from fabstir.storage import ObjectStore


def put(store: ObjectStore, job_id: int, status: SpotCheckStatus, checked_at: float) -> SpotCheck:
    outcome = SpotCheck(job_id, status, "synthetic", "0x01", "0x02", checked_at)
    store.put(spot_check_key(job_id), outcome.to_json())
    return outcome


def test_outcomes_after_since_are_read_back_in_job_order() -> None:
    store = ObjectStore("memory://fabstir-spot-check-records")
    late = put(store, 9, "failed", 2_000.0)
    early = put(store, 3, "passed", 1_500.0)
    put(store, 5, "passed", 900.0)
    store.put("jobs/9.json", b"{}")  # other objects in storage are not outcomes

    assert read_spot_checks(store, since=1_000.0) == [early, late]
    assert [o.job_id for o in read_spot_checks(store)] == [3, 5, 9]


def test_an_empty_store_has_no_outcomes() -> None:
    assert read_spot_checks(ObjectStore("memory://fabstir-spot-check-none")) == []


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_sample_rate_outside_0_1_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be in"):
        select_for_spot_check([1, 2], rate, "seed")
