from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_API_URL

from blocks import ChainBlock, current_settings
from fabstir.monitoring import (
    RatingSummary,
    job_run_states,
    read_ratings,
    summarize_ratings,
    token_decimals,
)
from fabstir.monitoring.uptime import DAY_S
from tasks._policy import RETRIES, RETRY_DELAYS_S, retry_transient


@task(
    name="qa-job-states",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=120,
)
def qa_job_states(days: int) -> dict[str, int]:
    """Count inference-job runs of the last ``days`` by final state, from this Prefect API."""
    return job_run_states(str(PREFECT_API_URL.value()), time.time() - days * DAY_S)


@task(
    name="qa-ratings",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=120,
)
def qa_ratings() -> RatingSummary:
    chain = ChainBlock.from_settings(current_settings()).get_client()
    return summarize_ratings(read_ratings(chain, chain.address, chain.deployment.deploy_block))


@task(name="qa-token-decimals", cache_policy=NO_CACHE, timeout_seconds=60)
def qa_token_decimals() -> dict[str, int]:
    return token_decimals(ChainBlock.from_settings(current_settings()).get_client())
