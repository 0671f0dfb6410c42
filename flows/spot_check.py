from __future__ import annotations

from prefect import flow

from blocks import current_settings
from fabstir.spotcheck import SpotCheck, select_for_spot_check
from tasks.spot_check import spot_check


@flow(name="spot-check")
def spot_check_jobs(job_ids: list[int]) -> list[SpotCheck]:
    """Re-run the sample of ``job_ids`` picked by FABSTIR_PROVER__SPOT_CHECK_RATE and _SEED."""
    prover = current_settings().prover
    sampled = select_for_spot_check(job_ids, prover.spot_check_rate, prover.spot_check_seed)
    return [spot_check(job_id) for job_id in sampled]
