from __future__ import annotations

from prefect import flow

from fabstir.spotcheck import SpotCheck
from tasks.spot_check import pending_spot_checks
from tasks.spot_check import spot_check as check_job


@flow(name="spot-check")
def spot_check() -> list[SpotCheck]:
    """Re-run this node's settled jobs picked by FABSTIR_PROVER__SPOT_CHECK_RATE and _SEED that
    have no stored outcome yet."""
    return [check_job(job_id) for job_id in pending_spot_checks()]
