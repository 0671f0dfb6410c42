from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import current_settings
from fabstir.monitoring import RatingSummary, ReportOutput, make_report
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


@task(
    name="qa-build",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=300,
)
def qa_build(
    days: int,
    job_states: dict[str, int],
    ratings: RatingSummary,
    decimals: dict[str, int],
) -> ReportOutput:
    """Build the report and write its HTML, PNG plots and JSON to storage."""
    return make_report(
        current_settings(),
        now=time.time(),
        days=days,
        job_states=job_states,
        ratings=ratings,
        token_decimals=decimals,
    )
